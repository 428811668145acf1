@echo off
rem Install node_agent from this package into %NODE_AGENT_HOME%, once per node (safe to re-run).
rem Called by the pool's start task before start_task\run.cmd. Needs no network: every wheel
rem is in ..\wheels. Python: %NODE_AGENT_PYTHON%, else the py launcher, else python on PATH,
rem else %ProgramFiles%\Python3*. Windows Server images ship no Python: use an image that has it.
rem Exit codes: 0 ok, 2 NODE_AGENT_HOME unset, 20 no usable Python / install failed.
setlocal EnableDelayedExpansion
set "SRC=%~dp0.."
if not defined NODE_AGENT_HOME (
  echo node_agent: NODE_AGENT_HOME is not set ^(the pool's start task environmentSettings set it^) 1>&2
  exit /b 2
)
set /p VERSION=<"%SRC%\VERSION"
if exist "%NODE_AGENT_HOME%\.installed" (
  set /p HAVE=<"%NODE_AGENT_HOME%\.installed"
  if "!HAVE!"=="%VERSION%" if exist "%NODE_AGENT_HOME%\.venv\Scripts\python.exe" (
    echo node_agent %VERSION% is already installed in %NODE_AGENT_HOME%
    exit /b 0
  )
)

set "PY=%NODE_AGENT_PYTHON%"
if not defined PY for /f "delims=" %%P in ('py -3 -c "import sys;print(sys.executable)" 2^>nul') do set "PY=%%P"
if not defined PY for /f "delims=" %%P in ('python -c "import sys;print(sys.executable)" 2^>nul') do set "PY=%%P"
if not defined PY for /d %%D in ("%ProgramFiles%\Python3*") do if exist "%%D\python.exe" set "PY=%%D\python.exe"
if not defined PY (
  echo node_agent: no Python 3.10+ on this node; use an image with Python or set NODE_AGENT_PYTHON 1>&2
  exit /b 20
)
"%PY%" -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" || (
  echo node_agent: %PY% is older than Python 3.10 1>&2
  exit /b 20
)

if not exist "%NODE_AGENT_HOME%" mkdir "%NODE_AGENT_HOME%"
del /q "%NODE_AGENT_HOME%\.installed" 2>nul
if exist "%NODE_AGENT_HOME%\.venv" rmdir /s /q "%NODE_AGENT_HOME%\.venv"
"%PY%" -m venv --without-pip "%NODE_AGENT_HOME%\.venv" || exit /b 20
for %%W in ("%SRC%\wheels\pip-*.whl") do set "PIPWHL=%%~fW"
"%NODE_AGENT_HOME%\.venv\Scripts\python.exe" "%PIPWHL%\pip" install --quiet --disable-pip-version-check --no-index --find-links "%SRC%\wheels" pip node-agent || (
  echo node_agent: installing from %SRC%\wheels failed 1>&2
  exit /b 20
)
for %%D in (bin start_task job_prep job_release) do (
  if exist "%NODE_AGENT_HOME%\%%D" rmdir /s /q "%NODE_AGENT_HOME%\%%D"
  xcopy /e /i /q /y "%SRC%\%%D" "%NODE_AGENT_HOME%\%%D" >nul || exit /b 20
)
rem Task command lines call bin\node-agent.cmd (the Windows twin of bin/node-agent).
> "%NODE_AGENT_HOME%\bin\node-agent.cmd" echo @"%%NODE_AGENT_HOME%%\.venv\Scripts\python.exe" -m node_agent %%*
> "%NODE_AGENT_HOME%\.installed" echo %VERSION%
echo node_agent %VERSION% installed in %NODE_AGENT_HOME%
exit /b 0
