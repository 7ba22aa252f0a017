import os

import pytest



@pytest.fixture
def conll_dir(tmp_path):
    def write(files):
        for name, text in files.items():
            mode = "wb" if isinstance(text, bytes) else "w"
            with open(os.path.join(tmp_path, name), mode) as f:
                f.write(text)
        return str(tmp_path)
    return write
