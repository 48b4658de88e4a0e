"""Find a secret in files the tests left: text, SQLite, XLSX (zipped XML), Parquet (compressed columns) and notebooks."""

from __future__ import annotations

import base64
import zipfile
from pathlib import Path


def needles(public_key: str, secret_key: str) -> list[str]:
    """The secret and its HTTP Basic form."""
    return [secret_key, base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()]


def _texts(path: Path) -> list[str]:
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as archive:
            return [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [str(pq.read_table(path).to_pylist())]
    return [path.read_bytes().decode("latin-1")]


def find_secrets(root: Path, secrets: list[str]) -> list[str]:
    """Every file below ``root`` that contains one of ``secrets`` (as ``path: secret-kind``)."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.stat().st_size > 50_000_000:
            continue
        try:
            texts = _texts(path)
        except Exception:  # noqa: BLE001 - an unreadable artifact is scanned as raw bytes instead
            texts = [path.read_bytes().decode("latin-1")]
        for i, secret in enumerate(secrets):
            if any(secret in text for text in texts):
                found.append(f"{path}: {'secret' if i == 0 else 'basic-auth form'}")
    return found
