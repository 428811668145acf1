"""Build the demo scene with Blender itself: `blender -b -P examples/make_scene.py -- <outdir>`.

Writes <outdir>/spin.blend (a textured cube and a floor, 24-frame turntable, Cycles at
a small size) and its textures as separate files in <outdir>/textures/, referenced by
relative paths, so job prep must bring more than the .blend for the render to be right.
"""

import math
import os
import sys

import bpy

out = os.path.abspath(sys.argv[sys.argv.index("--") + 1])
os.makedirs(os.path.join(out, "textures"), exist_ok=True)


def make_texture(name, size, colour_fn):
    img = bpy.data.images.new(name, width=size, height=size)
    px = []
    for y in range(size):
        for x in range(size):
            px.extend(colour_fn(x, y))
    img.pixels = px
    path = os.path.join(out, "textures", name + ".png")
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    img.filepath = "//textures/" + name + ".png"
    return img


bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.render.resolution_x = 192
scene.render.resolution_y = 108
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = 24

checker = make_texture(
    "checker",
    64,
    lambda x, y: (0.9, 0.4, 0.1, 1.0) if (x // 8 + y // 8) % 2 else (0.1, 0.2, 0.8, 1.0),
)
stripes = make_texture(
    "stripes", 64, lambda x, y: (0.2, 0.7, 0.3, 1.0) if (x // 4) % 2 else (0.95, 0.95, 0.9, 1.0)
)


def textured_material(name, img):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    bsdf = nodes.get("Principled BSDF")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = img
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


bpy.ops.mesh.primitive_cube_add(size=1.6, location=(0, 0, 1))
cube = bpy.context.object
bpy.ops.object.modifier_add(type="BEVEL")
cube.data.materials.append(textured_material("CubeMat", checker))
cube.rotation_euler = (0, 0, 0)
cube.keyframe_insert("rotation_euler", frame=1)
cube.rotation_euler = (0, 0, math.radians(345))
cube.keyframe_insert("rotation_euler", frame=24)
for fc in cube.animation_data.action.fcurves:
    for kp in fc.keyframe_points:
        kp.interpolation = "LINEAR"

bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, 0))
bpy.context.object.data.materials.append(textured_material("FloorMat", stripes))

bpy.ops.object.light_add(type="SUN", location=(4, -4, 8))
bpy.context.object.data.energy = 4.0
bpy.ops.object.camera_add(location=(4.5, -4.5, 3.2))
cam = bpy.context.object
direction = cube.location - cam.location
cam.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
scene.camera = cam

world = bpy.data.worlds.new("World")
world.color = (0.05, 0.05, 0.08)
scene.world = world

bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "spin.blend"), relative_remap=True)
print("demo scene written to", out)
