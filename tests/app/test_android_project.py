"""The Gradle project and the Android sources, checked as text (no Android SDK or Gradle here):
Java only, the files agree with each other and with the bench, the layers import what they may.
"""

from __future__ import annotations

import re
from pathlib import Path

from device_bench.app import APP_PACKAGE, BENCH_ACTIVITY

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "android_app"
APP_JAVA = APP / "app" / "src" / "main" / "java"
CORE_JAVA = APP / "core" / "src"


def imports(path: Path) -> list[str]:
    return re.findall(r"^import\s+(?:static\s+)?([\w.]+)", path.read_text(), re.MULTILINE)


def test_java_only():
    assert list(APP.rglob("*.kt")) == [] and list(APP.rglob("*.kts")) == []
    assert sorted(p.name for p in APP_JAVA.rglob("*.java")) == [
        "BenchmarkActivity.java", "EtProgram.java", "MainActivity.java"]


def test_gradle_files_agree_with_each_other_and_the_bench():
    app_gradle = (APP / "app" / "build.gradle").read_text()
    settings = (APP / "settings.gradle").read_text()
    props = (APP / "gradle.properties").read_text()
    manifest = (APP / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
    assert "include ':app', ':core'" in settings
    assert f"applicationId '{APP_PACKAGE}'" in app_gradle
    assert f"namespace '{APP_PACKAGE}'" in app_gradle
    assert re.search(r"^\s*minSdk 26$", app_gradle, re.MULTILINE)
    compile_sdk = re.search(r"compileSdk (\d+)", app_gradle)
    target_sdk = re.search(r"targetSdk (\d+)", app_gradle)
    assert compile_sdk and target_sdk and compile_sdk.group(1) == target_sdk.group(1)
    assert "abiFilters 'arm64-v8a', 'x86_64'" in app_gradle
    # the ExecuTorch artifact is the version that exports the programs
    pinned = re.search(r'"executorch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    version = re.search(r"^executorchVersion=([\d.]+)$", props, re.MULTILINE)
    assert pinned and version and pinned.group(1) == version.group(1) == "1.5.1"
    assert 'implementation "org.pytorch:executorch-android:${executorchVersion}"' in app_gradle
    assert "com.facebook.fbjni:fbjni:" in app_gradle
    assert "com.facebook.soloader:soloader:" in app_gradle
    assert "implementation project(':core')" in app_gradle
    # the activity the bench starts exists, is exported, and lives in the app's package
    assert f"{APP_PACKAGE}.BenchmarkActivity" == BENCH_ACTIVITY
    assert re.search(r'android:name="\.BenchmarkActivity"\s+android:exported="true"', manifest)
    assert (APP_JAVA / Path(*APP_PACKAGE.split(".")) / "BenchmarkActivity.java").is_file()
    wrapper = (APP / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    assert re.search(r"gradle-8\.\d+(\.\d+)?-bin\.zip", wrapper)


def test_layers_import_only_what_they_may():
    core = list((CORE_JAVA / "main").rglob("*.java"))
    assert core
    for f in core:
        bad = [i for i in imports(f) if not i.startswith(("java.", "org.lhqmobile.svc.core."))]
        assert bad == [], f"{f.name}: {bad}"
    for f in APP_JAVA.rglob("*.java"):
        allowed = ("android.", "java.", "org.pytorch.executorch.", "org.lhqmobile.svc.core.")
        bad = [i for i in imports(f) if not i.startswith(allowed)]
        assert bad == [], f"{f.name}: {bad}"
    uses = {i for f in APP_JAVA.rglob("*.java") for i in imports(f)
            if i.startswith("org.pytorch.executorch.")}
    assert uses == {"org.pytorch.executorch.EValue", "org.pytorch.executorch.Module",
                    "org.pytorch.executorch.Tensor"}
