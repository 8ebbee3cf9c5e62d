<#
.SYNOPSIS
    Install, reinstall or remove the rescue-flow worker as a Windows service.

.DESCRIPTION
    Uses WinSW 2.x (https://github.com/winsw/winsw/releases, WinSW-x64.exe) as
    the service host, with rescue-flow-worker.xml from this folder. Expects
    rescue-flow installed in <InstallDir>\venv and its config file in
    <InstallDir>\etc\rescue-flow.conf (docs/deployment.md).

    Install: checks that the worker's command runs and reads the config file,
    copies WinSW to <InstallDir>\service\rescue-flow-worker.exe with the XML
    beside it, and registers the service (automatic, delayed start; restart on
    failure; logs in <InstallDir>\log). An existing rescue-flow-worker service
    is stopped (gracefully: running flows finish) and replaced, which is also
    how an upgrade of the service definition is applied.

    Uninstall: stops the service gracefully and removes it. The venv, the
    config, the logs and the state folder stay.

.PARAMETER WinSW
    Path of the WinSW-x64.exe you downloaded (and checked). Required to install.

.PARAMETER InstallDir
    rescue-flow's folder. Default C:\OpenStack\rescue-flow.

.PARAMETER StateDir
    rescue-flow's [DEFAULT] state_path, created if missing (nothing else
    creates it, and the history database cannot be opened without it).
    Default: %ProgramData%\rescue-flow, which is also the option's default
    on Windows; pass the value if your config file sets another.

.PARAMETER Start
    Start the service once installed.

.PARAMETER Uninstall
    Stop and remove the service instead of installing it.

.EXAMPLE
    .\install-service.ps1 -WinSW C:\Downloads\WinSW-x64.exe -Start

.EXAMPLE
    .\install-service.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    [string]$WinSW,
    [string]$InstallDir = 'C:\OpenStack\rescue-flow',
    [string]$StateDir = (Join-Path $env:ProgramData 'rescue-flow'),
    [switch]$Start,
    [switch]$Uninstall
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$ServiceId = 'rescue-flow-worker'
$ServiceDir = Join-Path $InstallDir 'service'
$Wrapper = Join-Path $ServiceDir "$ServiceId.exe"
$Definition = Join-Path $PSScriptRoot "$ServiceId.xml"
$Worker = Join-Path $InstallDir 'venv\Scripts\rescue-flow.exe'
$ConfigFile = Join-Path $InstallDir 'etc\rescue-flow.conf'
$LogDir = Join-Path $InstallDir 'log'

function Assert-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'Run this script from an elevated PowerShell (as Administrator).'
    }
}

function Invoke-Wrapper([string]$Command) {
    & $Wrapper $Command
    if ($LASTEXITCODE -ne 0) {
        throw "$Wrapper $Command failed with exit code $LASTEXITCODE"
    }
}

function Remove-WorkerService {
    $service = Get-Service -Name $ServiceId -ErrorAction SilentlyContinue
    if (-not $service) {
        Write-Host "No $ServiceId service to remove."
        return
    }
    if ($service.Status -ne 'Stopped') {
        # WinSW sends Ctrl+C: the worker lets its running flows finish.
        Write-Host "Stopping $ServiceId (running flows finish first)..."
        Stop-Service -Name $ServiceId
    }
    if (Test-Path $Wrapper) {
        Invoke-Wrapper 'uninstall'
    } else {
        & sc.exe delete $ServiceId | Out-Null
    }
    Write-Host "$ServiceId removed."
}

Assert-Administrator

if ($Uninstall) {
    Remove-WorkerService
    return
}

if (-not $WinSW) { throw 'Give -WinSW <path of WinSW-x64.exe> to install the service.' }
if (-not (Test-Path $WinSW)) { throw "WinSW not found: $WinSW" }
if (-not (Test-Path $Definition)) { throw "Service definition not found: $Definition" }
if (-not (Test-Path $Worker)) {
    throw "rescue-flow is not installed in $InstallDir\venv (no $Worker); see docs/deployment.md"
}
if (-not (Test-Path $ConfigFile)) {
    throw "No config file at $ConfigFile; start from etc\rescue-flow.conf.sample"
}

New-Item -ItemType Directory -Force -Path $StateDir | Out-Null

# The worker would crash-loop on a config it cannot use: try it once here.
# 'status' checks every value of the config (exit 2 if one is not valid, as
# 'worker --check' does) and opens the history database in the state folder
# (exit 5 if it cannot), and changes nothing. It says what is wrong in one
# line on stderr. ('worker --check' would also need the broker, and the
# metrics port that a running worker holds.)
& $Worker --config-file $ConfigFile status --limit 1 | Out-Null
if ($LASTEXITCODE -ne 0) {
    throw "'rescue-flow --config-file $ConfigFile status --limit 1' failed (exit $LASTEXITCODE): fix what the line above says first"
}

Remove-WorkerService

New-Item -ItemType Directory -Force -Path $ServiceDir, $LogDir | Out-Null
Copy-Item -Force -Path $WinSW -Destination $Wrapper
Copy-Item -Force -Path $Definition -Destination (Join-Path $ServiceDir "$ServiceId.xml")
Invoke-Wrapper 'install'
Write-Host "$ServiceId installed: $Worker --config-file $ConfigFile worker"
Write-Host "Logs: $LogDir\$ServiceId.out.log (and .err.log, .wrapper.log)"

if ($Start) {
    Start-Service -Name $ServiceId
    Write-Host "$ServiceId started."
} else {
    Write-Host "Start it with: Start-Service $ServiceId"
}
