# A stand-in for haproxy:3.0 where the real image cannot be pulled (bench/compose_check.sh):
# Debian bookworm's HAProxy (2.6), the configuration where the official image reads it.
ARG BASE=localhost/retailklip-standin-python:3.11-slim-bookworm
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
