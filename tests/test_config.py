"""rsis_lite.config: profile defaults and overrides, device choice, seeding, the environment report."""
import random

import numpy as np
import pytest
import torch

from rsis_lite.errors import ConfigError

from rsis_lite import config
from rsis_lite.config import PROFILE_ENV, PROFILES, env_report, get_device, get_profile, seed_everything


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


# ---- profiles ------------------------------------------------------------------------------

def test_default_profile_is_quick_without_cuda(no_cuda, monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_profile().name == "quick"


def test_default_profile_is_full_with_cuda(with_cuda, monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_profile().name == "full"


@pytest.mark.parametrize("name", ["quick", "full"])
def test_environment_variable_wins_over_cuda(name, monkeypatch, with_cuda):
    monkeypatch.setenv(PROFILE_ENV, name)
    assert get_profile().name == name


def test_empty_environment_variable_means_default(no_cuda, monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "")
    assert get_profile().name == "quick"


def test_explicit_name_wins_over_environment(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "full")
    assert get_profile("quick").name == "quick"


def test_unknown_profile_names_the_choices(monkeypatch):
    with pytest.raises(ValueError) as err:
        get_profile("huge")
    msg = str(err.value)
    assert "huge" in msg and "quick" in msg and "full" in msg
    monkeypatch.setenv(PROFILE_ENV, "laptop")
    with pytest.raises(ValueError, match=PROFILE_ENV):
        get_profile()


def test_overrides_replace_single_fields():
    p = get_profile("quick", n_val=10, max_leaves=5)
    assert (p.n_val, p.max_leaves) == (10, 5)
    assert p.image_size == PROFILES["quick"].image_size
    assert PROFILES["quick"].n_val != 10, "overrides must not mutate the shared profile"
    assert get_profile(p) is p
    assert get_profile(p, min_leaves=3).min_leaves == 3


def test_overriding_an_unknown_field_fails():
    with pytest.raises(TypeError):
        get_profile("quick", no_such_field=1)


def test_quick_is_smaller_than_full():
    q, f = PROFILES["quick"], PROFILES["full"]
    assert q.image_size <= f.image_size
    assert q.max_leaves <= f.max_leaves and q.n_val <= f.n_val
    assert set(q.as_dict()) == set(f.as_dict())


# ---- devices -------------------------------------------------------------------------------

def test_device_defaults_to_cpu_without_cuda(no_cuda):
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


def test_device_is_cuda_when_present(with_cuda):
    assert get_device().type == "cuda"


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_asking_for_missing_cuda_fails_clearly(no_cuda, name):
    with pytest.raises(ConfigError, match="cpu"):
        get_device(name)


@pytest.mark.parametrize("name", ["gpu0", "cuda:x", "tpu"])
def test_malformed_device_names_are_config_errors(name):
    with pytest.raises(ConfigError, match="--device"):
        get_device(name)


def test_mps_only_when_asked(no_cuda, monkeypatch):
    mps = getattr(torch.backends, "mps", None)
    if mps is None:
        pytest.skip("this torch build has no torch.backends.mps")
    monkeypatch.setattr(mps, "is_available", lambda: True)
    assert get_device() == torch.device("cpu"), "MPS must never be picked without being asked for"
    assert get_device(allow_mps=True).type == "mps"
    assert get_device("mps").type == "mps"


def test_asking_for_missing_mps_fails_clearly(no_cuda, monkeypatch):
    mps = getattr(torch.backends, "mps", None)
    if mps is None:
        pytest.skip("this torch build has no torch.backends.mps")
    monkeypatch.setattr(mps, "is_available", lambda: False)
    assert get_device(allow_mps=True) == torch.device("cpu")
    with pytest.raises(ConfigError, match="cpu"):
        get_device("mps")


# ---- seeding -------------------------------------------------------------------------------

def _draw(gen):
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
            torch.rand(3, generator=gen).tolist())


def test_seed_everything_is_reproducible():
    a = _draw(seed_everything(123))
    b = _draw(seed_everything(123))
    assert a == b
    c = _draw(seed_everything(124))
    assert c != a


def test_seed_everything_accepts_large_seeds():
    gen = seed_everything(2**40 + 7)
    assert isinstance(gen, torch.Generator)


# ---- environment report --------------------------------------------------------------------

def test_env_report_lists_versions_profile_and_device(no_cuda):
    text = env_report("quick")
    lines = text.splitlines()
    keys = [line.split()[0] for line in lines]
    for key in ("python", "torch", "torchvision", "numpy", "scipy", "matplotlib", "profile", "device"):
        assert key in keys, f"{key!r} missing from env_report():\n{text}"
    assert any(line.startswith("profile") and "quick" in line for line in lines)
    assert any(line.startswith("device") and line.split()[-1] == "cpu" for line in lines)


def test_env_report_uses_the_given_device_and_default_profile(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "full")
    text = env_report(device=torch.device("cpu"))
    assert "profile      full" in text
    assert text.splitlines()[-1].split() == ["device", "cpu"]


def test_versions_reports_missing_packages(monkeypatch):
    import importlib.metadata as md

    real = md.version

    def fake(name):
        if name == "scipy":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "version", fake)
    assert config.versions()["scipy"] == "not installed"
