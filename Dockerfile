# The monitor image of the Pipes runners (rdmt_dagster.defs.l2.runners): one process that
# measures the L2 images of one Pipes session and sends their metric sets back.
#
#   ECS task:  the entry point below; PipesECSClient sets DAGSTER_PIPES_CONTEXT and
#              DAGSTER_PIPES_MESSAGES in the container's environment.
#   Lambda:    the same image as a container-image function, with the function's
#              ImageConfig overriding EntryPoint ["python", "-m", "awslambdaric"] and
#              Command ["rdmt_dagster.pipes.monitor.lambda_handler"]; memory >= 3 GB
#              for full 4088x4088 images, timeout up to 900 s.
#
# The task role (ECS) or execution role (Lambda) needs s3:GetObject on the archive's L2
# objects (and the catalog when RDMT_L2_CATALOG is an s3:// URI) and s3:GetObject,
# s3:PutObject and s3:DeleteObject on RDMT_PIPES_BUCKET. No secret is baked in or needed.
#
#   docker build -t rdmt-monitor .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RDMT_MONITOR_WORKDIR=/tmp/rdmt_l2

WORKDIR /opt/rdmt
# Dependencies are declared in pyproject.toml; only the package itself is copied (.dockerignore).
COPY pyproject.toml README.md ./
COPY rdmt_dagster ./rdmt_dagster
# awslambdaric: the runtime interface client that a non-AWS base image needs to serve as a Lambda.
RUN pip install . awslambdaric \
    && python -c "import rdmt_dagster.pipes.monitor, awslambdaric" \
    && useradd --create-home --uid 10001 monitor

# Lambda runs its own user and ignores this; ECS runs the monitor unprivileged.
USER monitor
WORKDIR /home/monitor
ENTRYPOINT ["python", "-m", "rdmt_dagster.pipes.monitor"]
