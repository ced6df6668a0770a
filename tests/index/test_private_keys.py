"""The workspace index takes the context's admission rules: a private key under any name stays out of it."""

from __future__ import annotations

from pathlib import Path

from coderag_daemon.index import IndexOptions, WorkspaceIndex
from coderag_daemon.workspace.admission import AdmissionPolicy

KEY = (
    "-----BEGIN OPENSSH" + " PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
)  # split: this file is no key


def test_private_keys_are_not_indexed_from_disk_or_from_the_editor(tmp_path: Path) -> None:
    root = (tmp_path / "ws").resolve()
    root.mkdir()
    for name in ("id_ecdsa", "deploy_key", "service-account.json", "keystore.jks", ".htpasswd"):
        (root / name).write_text(KEY)
    (root / "app.py").write_text("def handshake():\n    return 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ'\n")
    with WorkspaceIndex(AdmissionPolicy([root]), None, IndexOptions(min_update_interval=0.0)) as index:
        index.build().result(timeout=60)
        index.update_text(root / "notes.md", KEY)  # an editor buffer
        index.update_path(root / "deploy_key")
        assert index.wait_idle(timeout=30)
        hits = index.search("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ OPENSSH PRIVATE KEY")
        assert {hit.display for hit in hits} == {"app.py"}
