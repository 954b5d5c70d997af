#!/bin/sh
# Build and test the app's pure-Java core on the JVM, without Gradle (what `make app-test` runs):
#   1. the shared test vectors, written by the project's Python code (make_vectors.py);
#   2. javac --release 8 of android_app/core/src/main/java (the Java level Android accepts);
#   3. javac of the JUnit 4 tests against Debian's junit4 and hamcrest jars;
#   4. JUnitCore on every *Test class, with -Dvectors.dir and -Dout.dir (where the tests write
#      java_result.json for tests/app/test_java_core.py).
# Usage: core_test.sh [BUILD_DIR]   (default build/app_core; PYTHON: the project's interpreter)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
CORE="$HERE/../core"
BUILD=${1:-build/app_core}
PYTHON=${PYTHON:-.venv/bin/python}
JUNIT=${JUNIT_JAR:-/usr/share/java/junit4.jar}
HAMCREST=${HAMCREST_JAR:-/usr/share/java/hamcrest.jar}
[ -f "$HAMCREST" ] || HAMCREST=/usr/share/java/hamcrest-core.jar

for tool in javac java; do
  command -v "$tool" >/dev/null 2>&1 || { echo "app-test: $tool not found (install a JDK 17)" >&2; exit 1; }
done
for jar in "$JUNIT" "$HAMCREST"; do
  [ -f "$jar" ] || { echo "app-test: $jar not found (apt-get install junit4)" >&2; exit 1; }
done

rm -rf "$BUILD"
mkdir -p "$BUILD/classes" "$BUILD/test-classes" "$BUILD/out"
"$PYTHON" "$HERE/make_vectors.py" "$BUILD/vectors"
find "$CORE/src/main/java" -name '*.java' > "$BUILD/main.txt"
find "$CORE/src/test/java" -name '*.java' > "$BUILD/test.txt"
javac --release 8 -Xlint:all -Werror -encoding UTF-8 -d "$BUILD/classes" @"$BUILD/main.txt"
javac --release 8 -encoding UTF-8 -cp "$BUILD/classes:$JUNIT:$HAMCREST" \
  -d "$BUILD/test-classes" @"$BUILD/test.txt"
TESTS=$(cd "$BUILD/test-classes" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
java -Dvectors.dir="$BUILD/vectors" -Dout.dir="$BUILD/out" \
  -cp "$BUILD/classes:$BUILD/test-classes:$JUNIT:$HAMCREST" org.junit.runner.JUnitCore $TESTS
