# A stand-in for postgres:16 where the real image cannot be pulled (bench/compose_check.sh; the
# build context is bench/standins):
# Debian bookworm's PostgreSQL (15) behind an entrypoint that does what the official image's does
# for the variables docker-compose.yml sets: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, a
# first-start initdb into PGDATA (the pgdata volume), password auth from other containers.
ARG BASE=localhost/retailklip-standin-python:3.11-slim-bookworm
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
