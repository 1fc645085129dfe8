"""`shipyard deploy ...`: a container build context, an image, Kubernetes manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from shipyard.cli.console import err_console, out

deploy_app = typer.Typer(
    help="Package a model version for deployment: container image, Kubernetes manifests.",
    no_args_is_help=True,
)

RefArgument = Annotated[
    str, typer.Argument(help="The version to deploy: NAME, NAME@VERSION or NAME@ALIAS.")
]
OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="A new or empty folder to write into.")
]
PortOption = Annotated[int, typer.Option(help="Port the server listens on in the container.")]
WorkersOption = Annotated[int, typer.Option(help="Server worker processes per container.")]


@deploy_app.command("docker")
def docker(
    ref: RefArgument,
    out_dir: OutOption,
    base: Annotated[
        str | None,
        typer.Option(help="Base image with Python (default: python:X.Y-slim, X.Y the model's)."),
    ] = None,
    port: PortOption = 8080,
    workers: WorkersOption = 1,
    build: Annotated[
        bool, typer.Option("--build", help="Build the image too (Podman, else Docker).")
    ] = False,
    tag: Annotated[
        str | None, typer.Option(help="Image tag for --build (default: shipyard-NAME:VERSION).")
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            help="CA bundle pip may use while building (a build secret, not kept in the image).",
            envvar="PIP_CERT",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    """Write a container build context (Dockerfile, locked requirements, the model's project)."""
    from shipyard.deploy.docker import build_image, check_image, docker_context

    if tag is not None:
        check_image(tag, "--tag")  # before the work, not after it
    context = docker_context(ref, out_dir, base=base, port=port, workers=workers)
    pins = "hash-checked" if context.hashed else "pinned, without hashes"
    out.print(
        f"[green]wrote[/] build context for [bold]{escape(context.model)}@{context.version}[/] "
        f"in {escape(str(context.path))}"
    )
    out.print(f"  base          {escape(context.base)}")
    out.print(f"  requirements  from {context.requirements} ({pins})")
    out.print(f"  shipyard      wheels/{escape(context.wheel)}")
    if not build:
        out.print(f"  build with    podman build --format docker -t {escape(context.tag)} "
                  f"{escape(str(context.path))}   (or --build)")  # fmt: skip
        return
    built = build_image(
        context,
        tag=tag,
        ca_bundle=ca_bundle,
        on_output=lambda line: err_console.print(f"[dim]{escape(line)}[/]", highlight=False),
    )
    out.print(f"[green]built[/] image {escape(built)}")
    out.print(
        f"  run with      podman run --rm -p 127.0.0.1:{context.port}:{context.port} "
        f"{escape(built)}"
    )


@deploy_app.command("k8s")
def k8s(
    ref: RefArgument,
    out_dir: OutOption,
    image: Annotated[
        str | None,
        typer.Option(help="The image to run (default: shipyard-NAME:VERSION, as --build tags)."),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Pods to start with.")] = 2,
    min_replicas: Annotated[
        int | None, typer.Option(help="Fewest pods the autoscaler keeps (default: --replicas).")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option(help="Most pods the autoscaler starts (default: 10 or more).")
    ] = None,
    cpu: Annotated[str, typer.Option(help="CPU request per pod (500m, 1, 2).")] = "500m",
    memory: Annotated[
        str, typer.Option(help="Memory request and limit per pod (512Mi, 1Gi).")
    ] = "1Gi",
    cpu_utilization: Annotated[
        int, typer.Option(help="The autoscaler's target, in percent of the CPU request.")
    ] = 70,
    port: PortOption = 8080,
    workers: WorkersOption = 1,
) -> None:
    """Write Kubernetes manifests: ConfigMap, Deployment, Service, HorizontalPodAutoscaler."""
    from shipyard.deploy.k8s import k8s_manifests

    manifests = k8s_manifests(
        ref,
        out_dir,
        image=image,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cpu=cpu,
        memory=memory,
        cpu_utilization=cpu_utilization,
        port=port,
        workers=workers,
    )
    kinds = ", ".join(str(d["kind"]) for d in manifests.documents)
    out.print(
        f"[green]wrote[/] {escape(str(manifests.path))} for [bold]{escape(manifests.version)}[/]: "
        f"{kinds}"
    )
    out.print(f"  apply with    kubectl apply -f {escape(str(manifests.path))}")
