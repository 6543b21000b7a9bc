import pytest

from distkv.testing.process import ServerProcess


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, "test1")
    yield srv
    srv.stop()
