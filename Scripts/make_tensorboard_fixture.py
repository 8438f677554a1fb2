#!/usr/bin/env python3
"""Writes Tests/TensorBoardTests/Fixtures/reference.tfevents with the `tensorboard` package's own
protobuf messages and record writer, and the PNG it holds (tiny.png, made with Pillow), for
TensorBoardTests to compare the Swift writer's bytes against. Times and steps are fixed, so the
file is the same on every run.

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard pillow
    /tmp/tb/bin/python Scripts/make_tensorboard_fixture.py
"""
import io
import os

from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "TensorBoardTests", "Fixtures")


def main():
    os.makedirs(OUT, exist_ok=True)
    # A 3×2 RGB image with distinct pixels.
    img = Image.new("RGB", (3, 2))
    img.putdata([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (128, 128, 128)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png = buf.getvalue()
    with open(os.path.join(OUT, "tiny.png"), "wb") as f:
        f.write(png)

    events = [
        event_pb2.Event(wall_time=1767225600.25, file_version="brain.Event:2"),
        # Step 300 takes a two-byte varint; grad_norm 0 is a oneof member, written although zero.
        event_pb2.Event(
            wall_time=1767225601.5,
            step=300,
            summary=summary_pb2.Summary(
                value=[
                    summary_pb2.Summary.Value(tag="loss/total", simple_value=0.25),
                    summary_pb2.Summary.Value(tag="lr", simple_value=1e-4),
                    summary_pb2.Summary.Value(tag="grad_norm", simple_value=0.0),
                ]
            ),
        ),
        event_pb2.Event(
            wall_time=1767225602.75,
            step=300,
            summary=summary_pb2.Summary(
                value=[
                    summary_pb2.Summary.Value(
                        tag="validation/0-000001",
                        image=summary_pb2.Summary.Image(height=2, width=3, colorspace=3, encoded_image_string=png),
                    )
                ]
            ),
        ),
    ]
    with open(os.path.join(OUT, "reference.tfevents"), "wb") as f:
        w = RecordWriter(f)
        for e in events:
            w.write(e.SerializeToString())
    print(f"wrote {len(events)} events and tiny.png ({len(png)} bytes) to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
