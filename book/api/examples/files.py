import tempfile
from pathlib import Path

from nullspace_utils import files

with tempfile.TemporaryDirectory() as folder:
    target = Path(folder) / "labels.txt"
    with files.atomic_write(target) as temporary:  # written beside the target, renamed onto it when complete
        temporary.write_text("circle\n")
    assert target.read_text() == "circle\n" and sorted(Path(folder).iterdir()) == [target]  # no partial file left
    try:
        with files.atomic_write(target, replace=False) as temporary:  # create-or-fail: never replaces a file
            temporary.write_text("square\n")
    except FileExistsError:
        assert target.read_text() == "circle\n"  # kept, even if another process had written it meanwhile
    else:
        raise AssertionError("an exclusive write must not replace an existing file")
    encoded = Path(folder) / "mark.bin"
    files.write_bytes_atomically(encoded, b"\x89PNG...", replace=False)  # the same guarantees, bytes at once
    assert encoded.read_bytes() == b"\x89PNG..." and sorted(Path(folder).iterdir()) == [target, encoded]
    digest = files.sha256_of_file(target)
    assert digest == "cab03e90f5e8bd39599272b6b9cde27acba552fc8bd795524a80ad5c811daa6e"  # hex sha256, read in chunks
    assert files.git_commit(Path(folder)) == "unknown"  # outside a checkout
assert len(files.git_commit()) in (40, len("unknown")) and (files.REPOSITORY_ROOT / "nullspace_utils").is_dir()
