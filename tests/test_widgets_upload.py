"""The "segment your own image" widget, driven headless: an upload is read, resized to the
checkpoint's size, predicted and drawn back at its own size; a bad upload is one status line."""
import datetime
import io

import numpy as np
import torch
from PIL import Image

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.data import SyntheticLeaves
from rsis_lite.widgets.upload import segment_widget

CKPTS = {name: shipped_checkpoint(name, "quick") for name in ("ris", "attention", "rsis")}


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_an_upload_is_segmented_at_its_own_size_like_predict():
    scene = SyntheticLeaves(1, size=64, seed=21)[0][0]
    photo = (scene.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    photo = np.asarray(Image.fromarray(photo).resize((90, 75)))              # (75, 90, 3): not the model's size
    box = segment_widget(CKPTS, torch.rand(3, 64, 64))
    upload, status, view = box.children[0].children[0], box.children[2], box.children[3]
    upload.value = ({"name": "leaf.jpg", "type": "image/jpeg", "size": 1, "content": memoryview(png_bytes(photo, "JPEG")),
                     "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert status.value.startswith("leaf.jpg:") and "ris" in status.value
    # The command line on the same file (another route: ImageFiles, predict_full) finds as many.
    import tempfile
    from pathlib import Path

    from rsis_lite.commands import main
    from rsis_lite.data.io import read_label

    tmp = Path(tempfile.mkdtemp())
    (tmp / "leaf.jpg").write_bytes(png_bytes(photo, "JPEG"))
    assert main(["predict", "--checkpoint", str(CKPTS["ris"]), "--images", str(tmp / "leaf.jpg"),
                 "--out", str(tmp / "out")]) == 0
    labels = read_label(tmp / "out" / "leaf.png").numpy()
    assert labels.shape == (75, 90) and labels.max() >= 1
    assert f"{int(labels.max())} instances" in status.value
    assert view.result["instances"] == int(labels.max())


def test_a_bad_upload_is_one_status_line_and_other_systems_run():
    box = segment_widget(CKPTS, torch.rand(3, 64, 64))
    upload, choice, status = box.children[0].children[0], box.children[0].children[1], box.children[2]
    upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 3, "content": memoryview(b"abc"),
                     "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert status.value.startswith("<b>error:</b>") and "notes.txt" in status.value
    for name in ("attention", "rsis"):
        choice.value = name
        assert f"({name})" in status.value
