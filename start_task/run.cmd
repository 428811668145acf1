@echo off
rem Batch start task (Windows): find node_agent's Python and run start_task\run.py.
setlocal
set "HERE=%~dp0"
if not defined NODE_AGENT_HOME set "NODE_AGENT_HOME=%HERE%.."
if not defined NODE_AGENT_PYTHON (
  if exist "%NODE_AGENT_HOME%\.venv\Scripts\python.exe" (
    set "NODE_AGENT_PYTHON=%NODE_AGENT_HOME%\.venv\Scripts\python.exe"
  ) else (
    set "NODE_AGENT_PYTHON=python"
  )
)
"%NODE_AGENT_PYTHON%" "%HERE%run.py" %*
exit /b %ERRORLEVEL%
