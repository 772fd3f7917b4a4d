#!/usr/bin/env python3
"""Writes a deterministic OCI image layout for benchmarks and manual checks.

usage: make-layout.py DIR --layers N --size BYTES [--seed S] [--platforms P]

With --platforms 1 (the default) DIR holds one image of N layers; with more, an index over that
many images that share their first layer. Layer bytes are pseudo-random (incompressible), so no
registry or transport can take a shortcut. The same arguments always give the same digests.
"""
import argparse
import hashlib
import json
import os
import random


def write_blob(root, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def write_layer(root, seed, size):
    """Streams a pseudo-random layer to disk in 1 MiB pieces, hashing as it goes."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    tmp = os.path.join(root, "blobs", "sha256", ".partial")
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            chunk = rng.randbytes(n)
            h.update(chunk)
            f.write(chunk)
            left -= n
    os.replace(tmp, os.path.join(root, "blobs", "sha256", h.hexdigest()))
    return "sha256:" + h.hexdigest()


def descriptor(media_type, digest, size, **extra):
    return dict(mediaType=media_type, digest=digest, size=size, **extra)


def image(root, seed, layers, size, shared, arch):
    descs = []
    for i in range(layers):
        layer_seed = 0 if (shared and i == 0) else seed * 1000 + i
        digest = write_layer(root, layer_seed, size)
        descs.append(descriptor("application/vnd.oci.image.layer.v1.tar+gzip", digest, size))
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
        "config": {},
    }, sort_keys=True).encode()
    config_desc = descriptor("application/vnd.oci.image.config.v1+json",
                             write_blob(root, config), len(config))
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": descs,
    }, sort_keys=True).encode()
    return descriptor("application/vnd.oci.image.manifest.v1+json",
                      write_blob(root, manifest), len(manifest))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--platforms", type=int, default=1)
    a = p.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    arches = ["amd64", "arm64", "s390x", "ppc64le", "riscv64"]
    if a.platforms == 1:
        top = image(a.dir, a.seed, a.layers, a.size, False, "amd64")
    else:
        children = []
        for n in range(a.platforms):
            arch = arches[n % len(arches)]
            d = image(a.dir, a.seed * 100 + n, a.layers, a.size, True, arch)
            d["platform"] = {"os": "linux", "architecture": arch}
            children.append(d)
        index = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        }, sort_keys=True).encode()
        top = descriptor("application/vnd.oci.image.index.v1+json",
                         write_blob(a.dir, index), len(index))
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [top]}, f)
    print(top["digest"])


if __name__ == "__main__":
    main()
