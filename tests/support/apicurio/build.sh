#!/usr/bin/env bash
# Builds a runnable Apicurio Registry 2.4.2.Final (Quarkus 2.16.4 legacy jar) from Maven Central,
# for the schema-registry client tests. Usage: build.sh OUT_DIR   (OUT_DIR/target/*-runner.jar)
#
# Apicurio 3.x cannot be assembled from what Maven Central serves here; 2.4.2 can, with the two
# workarounds below. Everything goes to OUT_DIR (its own local repository), nothing to ~/.m2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out"
cp -r "$here/pom.xml" "$here/src" "$out/"
cd "$out"
m2="$out/m2"
# Apicurio's parent POM lists extra repositories that are unreachable from here: block them
# so Maven uses Central only, instead of failing on each.
cat > settings.xml <<XML
<settings><localRepository>$m2</localRepository>
  <mirrors><mirror><id>central-only</id><mirrorOf>*,!central</mirrorOf>
    <url>http://0.0.0.0/</url><blocked>true</blocked></mirror></mirrors>
</settings>
XML
mvn=(mvn -B -q -s settings.xml)
# io.apicurio:apicurio-common-app-components-config-index-deployment:0.1.18.Final (a build-time
# Quarkus extension) is not served; 0.1.10.Final has the same single build step against the same
# recorder API, so it is installed in the private repository under the 0.1.18.Final coordinates.
a=apicurio-common-app-components-config-index-deployment
if [ ! -f "$m2/io/apicurio/$a/0.1.18.Final/$a-0.1.18.Final.jar" ]; then
  mkdir -p shim
  "${mvn[@]}" dependency:copy -Dartifact=io.apicurio:$a:0.1.10.Final:jar -DoutputDirectory=shim
  "${mvn[@]}" dependency:copy -Dartifact=io.apicurio:$a:0.1.10.Final:pom -DoutputDirectory=shim
  sed 's/0\.1\.10\.Final/0.1.18.Final/g' shim/$a-0.1.10.Final.pom > shim/$a-0.1.18.Final.pom
  "${mvn[@]}" install:install-file -Dfile=shim/$a-0.1.10.Final.jar -DpomFile=shim/$a-0.1.18.Final.pom
fi
"${mvn[@]}" -DskipTests package
test -f target/apicurio-runner-1.0-runner.jar
