"""Tools for operators on a node: doctor (what is wrong) and status (what is here)."""
