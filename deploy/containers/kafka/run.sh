#!/bin/bash
# Writes server.properties from the KAFKA_* variables as the apache/kafka image does
# ("_" -> ".", "__" -> "_", "___" -> "-"), formats the storage once and runs the broker.
set -euo pipefail
props=/var/lib/kafka/server.properties
: >"$props"
skip=" HEAP_OPTS OPTS JVM_PERFORMANCE_OPTS LOG4J_OPTS GC_LOG_OPTS JMX_OPTS DEBUG VERSION "
for var in $(compgen -e); do
  case "$var" in KAFKA_*) ;; *) continue ;; esac
  key=${var#KAFKA_}
  case "$skip" in *" $key "*) continue ;; esac
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "${!var}" >>"$props"
done
grep -q '^log\.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >>"$props"
dir=$(sed -n 's/^log\.dirs=//p' "$props" | cut -d, -f1)
cp="/opt/kafka/libs/*"
log4j="-Dlog4j.configuration=file:/opt/kafka/log4j.properties"
if [ ! -f "$dir/meta.properties" ]; then
  java -cp "$cp" "$log4j" kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$props"
fi
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -Djava.awt.headless=true "$log4j" -cp "$cp" kafka.Kafka "$props"
