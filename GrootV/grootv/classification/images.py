"""Image folders that survive a bad file: a message naming it, then stop or skip (DATA.ON_BAD_IMAGE).

A zero-byte, corrupt or truncated file in a dataset of a million images is not rare, and
PIL reports it deep inside a data-loader worker, mid-epoch; for a truncated file its
message does not even say which one. Here every image is decoded in full when it is read,
and a file that cannot be is reported by path:

* ``stop`` (the default): the run ends with a :class:`UnreadableImageError` (a
  DataError: one line on the command line) that names the file;
* ``skip``: a warning names the file, and the image is left out: in training the next
  readable image of the folder takes its place (batches keep their size, which Mixup
  needs), in evaluation it gets the label -1, which the evaluation ignores. Each folder
  marks the files it found unreadable in memory shared with its data-loader workers, so
  the run can count them (:func:`count_unreadable`).
"""

from __future__ import annotations

import logging

import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from .errors import DataError

logger = logging.getLogger(__name__.rsplit(".", 1)[0])

BAD_IMAGE_CHOICES = ("stop", "skip")
# The label of an evaluation image left out with ON_BAD_IMAGE skip.
LEFT_OUT = -1


class UnreadableImageError(DataError):
    """An image file PIL cannot decode; the message names it."""

    def __init__(self, message: str):
        # Raised in a data-loader worker, the error reaches the main process re-created from
        # the worker's formatted traceback ("Caught ... Original Traceback ..."); the user
        # needs only its last line, this message.
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if "Original Traceback" in message and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


def read_image(path: str) -> Image.Image:
    """The image at ``path``, decoded in full and converted to RGB."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            # Decode now: a truncated file otherwise fails later, in a transform, without its name.
            image.load()
            return image.convert("RGB")
    except Exception as error:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ValueError, EOFError, ...)
        raise UnreadableImageError(f"cannot read the image {path}: {type(error).__name__}: {error}") from None


class CheckedImageFolder(ImageFolder):
    """torchvision's ImageFolder with :func:`read_image` and the ON_BAD_IMAGE policy.

    Args (besides ImageFolder's): ``on_bad_image`` ("stop" or "skip"), ``for_training``
    (a skipped image is replaced by the next readable one; otherwise it is labelled
    :data:`LEFT_OUT`).
    """

    def __init__(self, root, *, on_bad_image: str = "stop", for_training: bool = False, **kwargs):
        if on_bad_image not in BAD_IMAGE_CHOICES:
            raise ValueError(f"`on_bad_image` must be one of {BAD_IMAGE_CHOICES}, got {on_bad_image!r}")
        super().__init__(root, loader=read_image, **kwargs)
        self.on_bad_image = on_bad_image
        self.for_training = for_training
        # Shared with the workers (forked or spawned), which mark what they find.
        self.unreadable = torch.zeros(len(self.samples), dtype=torch.bool).share_memory_()

    def __getitem__(self, index: int):
        index = range(len(self.samples))[index]  # IndexError past the end: the end of iteration
        for candidate in range(index, index + len(self.samples)):
            candidate %= len(self.samples)
            path, target = self.samples[candidate]
            try:
                image = read_image(path)
            except UnreadableImageError as error:
                if self.on_bad_image == "stop":
                    raise UnreadableImageError(
                        f"{error}. Remove or replace the file, or skip unreadable images with "
                        "--on-bad-image skip (DATA.ON_BAD_IMAGE)"
                    ) from None
                if not self.unreadable[candidate]:
                    self.unreadable[candidate] = True
                    logger.warning(f"{error}; skipped (DATA.ON_BAD_IMAGE skip)")
                if not self.for_training:
                    return self._transformed(Image.new("RGB", (1, 1))), LEFT_OUT
                continue
            return self._transformed(image), self._target(target)
        raise UnreadableImageError(f"no image in {self.root} is readable ({len(self.samples)} files)")

    def _transformed(self, image: Image.Image):
        return self.transform(image) if self.transform is not None else image

    def _target(self, target: int) -> int:
        return self.target_transform(target) if self.target_transform is not None else target


def count_unreadable(folders, device: torch.device, distributed: bool) -> int:
    """How many files of ``folders`` some process has skipped as unreadable so far (every process
    must call it: the counts are combined over the processes)."""
    flags = [folder.unreadable for folder in folders
             if isinstance(folder, CheckedImageFolder) and folder.on_bad_image == "skip"]
    if not flags:
        return 0
    found = torch.cat(flags).to(device=device, dtype=torch.int32)
    if distributed:
        torch.distributed.all_reduce(found, op=torch.distributed.ReduceOp.MAX)
    return int(found.sum())
