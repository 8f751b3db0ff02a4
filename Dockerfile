# clinvk's one image for every function (docs/deploy.md). Two targets:
#   runtime    the Lambda Python runtime; buffered functions run `handlers.<name>.handler` through Mangum
#   streaming  runtime + the AWS Lambda Web Adapter; uvicorn serves the chat app, and the adapter streams
# Builds with the classic builder too (what `sam build` drives): no BuildKit-only syntax.
#
# Pins: the base images by tag and digest (refresh: `docker buildx imagetools inspect IMAGE:TAG`), Node by
# version and the SHA-256 of its official tarball (SHASUMS256.txt), the CLIs by package-lock.json, Python
# packages by constraints.txt. All for x86_64, the architecture template.yaml deploys.

# Lambda's Python 3.12 base (Amazon Linux 2023).
FROM public.ecr.aws/lambda/python:3.12@sha256:145350008f3f67d82c0bc6ecd34d9eb0c95aecf11f9b69db6bab7de3d5d3cc61 AS lambda-python

# --- the CLIs: Node 22 and `npm ci` from the lockfile, in a stage that is thrown away ------------------
FROM lambda-python AS clis
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# tar/xz unpack Node; gcc-c++/make build the CLIs' native optional dependencies (node-pty via node-gyp).
RUN dnf install -y gcc-c++ make tar xz && dnf clean all
ARG NODE_VERSION=22.23.3
ARG NODE_SHA256=df450af89261115ef9f9e3830c3eeb2cc9213b63c720b1af623cb5dcbe2e02de
RUN curl -fsSL --retry 3 -o /tmp/node.tar.xz "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" \
    && echo "${NODE_SHA256}  /tmp/node.tar.xz" | sha256sum --check --strict - \
    && mkdir -p /opt/node \
    && tar -xJf /tmp/node.tar.xz -C /opt/node --strip-components=1 --no-same-owner \
    && rm /tmp/node.tar.xz
ENV PATH=/opt/node/bin:$PATH
WORKDIR /opt/clinvk
COPY package.json package-lock.json ./
# Optional dependencies are where claude and codex ship their native binaries: never --omit=optional.
RUN npm ci --no-audit --no-fund && npm cache clean --force

# --- the buffered functions' image --------------------------------------------------------------------
FROM lambda-python AS runtime
# Node's own runtime library; already there in most base releases, asked for so it always is.
RUN dnf install -y libstdc++ && dnf clean all
COPY --from=clis /opt/node/bin/node /usr/local/bin/node
COPY --from=clis /opt/clinvk/node_modules /opt/clinvk/node_modules
WORKDIR /tmp/clinvk-src
COPY pyproject.toml constraints.txt README.md ./
COPY clinvk_core ./clinvk_core
COPY handlers ./handlers
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore -c constraints.txt . \
    && rm -rf /tmp/clinvk-src
WORKDIR /var/task
# Lambda's filesystem is read-only except /tmp: state, the CLIs' home and temp files live there.
ENV CLINVK_BIN_DIR=/opt/clinvk/node_modules/.bin \
    CLINVK_STATE_DIR=/tmp/clinvk \
    HOME=/tmp/clinvk/home \
    TMPDIR=/tmp
CMD ["handlers.health.handler"]

# --- the streaming chat function's image ----------------------------------------------------------------
FROM runtime AS streaming
COPY --from=public.ecr.aws/awsguru/aws-lambda-adapter:1.0.0@sha256:b4da35991627bdac98a81c377d0cc28e6989687359576dfda9f0b64be835d648 /lambda-adapter /opt/extensions/lambda-adapter
# The adapter forwards each invocation to uvicorn on AWS_LWA_PORT once the chat app's /health answers,
# streaming the response.
ENV AWS_LWA_INVOKE_MODE=response_stream \
    AWS_LWA_READINESS_CHECK_PATH=/health \
    AWS_LWA_PORT=8080
ENTRYPOINT ["python3", "-m", "uvicorn"]
CMD ["handlers.chat_completions:app", "--host", "127.0.0.1", "--port", "8080", "--no-access-log"]
