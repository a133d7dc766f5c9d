# The sidecar's image: the wheel (rules/ and probes/ inside), py-spy (a dependency), an entrypoint that drops
# from root to uid 10001 with exactly three ambient capabilities (deploy/docker/entrypoint.sh).
#   docker build -t registry.example.com/mcp-watchdog:0.1.0 .
# tests/deploy runs the same install steps in a fresh venv (no container build runs on the CI machines).
FROM python:3.12-slim AS build
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.12-slim
# setpriv is util-linux, part of every Debian image
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/mcp-watchdog \
        --shell /usr/sbin/nologin mcp-watchdog \
    && python -m venv /opt/mcp-watchdog \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/mcp-watchdog
COPY --from=build /dist/ /tmp/dist/
RUN /opt/mcp-watchdog/bin/pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist \
    && /opt/mcp-watchdog/bin/py-spy --version
COPY deploy/docker/entrypoint.sh /usr/local/bin/mcp-watchdog-entrypoint
ENV PATH=/opt/mcp-watchdog/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 9464
# root only until the entrypoint's setpriv: the manifests set runAsUser: 0 and the five capabilities it needs
USER 0
ENTRYPOINT ["/usr/local/bin/mcp-watchdog-entrypoint"]
CMD ["run", "-c", "/etc/mcp-watchdog/watchdog.yaml"]
