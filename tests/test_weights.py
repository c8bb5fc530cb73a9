"""Bad weight files give errors that name the file, what it is for, and what is wrong."""
import shutil

import pytest
import torch

from model.methods import load_method
from model.weights import VGG, WeightsError, packaged_path


@pytest.fixture
def weights(tmp_path, official_weights_dir):
    shutil.copytree(official_weights_dir, tmp_path / "w")
    return tmp_path / "w"


def test_missing_file_names_it_and_where_to_get_it(weights):
    (weights / "stya2k/latest_net_transform.pth").unlink()
    with pytest.raises(WeightsError) as err:
        load_method("stya2k", weights, "cpu")
    message = str(err.value)
    assert "latest_net_transform.pth is missing" in message
    assert "Transform" in message and "github.com/LearningHx/StyA2K" in message
    assert str(weights / "stya2k/latest_net_transform.pth") in message


def test_swapped_files_report_the_keys_that_differ(weights):
    # StyA2K's decoder file where AdaAttN's module at relu3_1 is expected
    shutil.copy(weights / "stya2k/latest_net_decoder.pth", weights / "adaattn/latest_net_adaattn_3.pth")
    with pytest.raises(WeightsError) as err:
        load_method("adaattn", weights, "cpu")
    message = str(err.value)
    assert "latest_net_adaattn_3.pth does not fit AdaAttN's module at relu3_1" in message
    assert "missing key f.weight (448, 448, 1, 1)" in message
    assert "unexpected key decoder_layer_1.1.weight" in message


def test_wrong_shape_is_reported(weights):
    state = torch.load(weights / "sanet/transformer_iter_500000.pth", weights_only=True)
    state["merge_conv.weight"] = torch.zeros(256, 512, 3, 3)
    torch.save(state, weights / "sanet/transformer_iter_500000.pth")
    with pytest.raises(WeightsError, match=r"key merge_conv.weight has shape \(256, 512, 3, 3\), expected \(512, 512, 3, 3\)"):
        load_method("sanet", weights, "cpu")


def test_not_a_weight_file(weights):
    (weights / "sanet/decoder_iter_500000.pth").write_text("<html>Google Drive: virus scan warning</html>")
    with pytest.raises(WeightsError, match="could not be read as a PyTorch weight file"):
        load_method("sanet", weights, "cpu")


def test_pickled_code_is_refused(weights):
    torch.save({"decoder": torch.nn.Conv2d(1, 1, 1)}, weights / "sanet/decoder_iter_500000.pth")
    with pytest.raises(WeightsError, match="could not be read"):
        load_method("sanet", weights, "cpu")


def test_wrong_vgg_in_weights_dir_is_refused(weights):
    torch.save({"0.weight": torch.zeros(3, 3, 1, 1)}, weights / "vgg_normalised.pth")
    with pytest.raises(WeightsError, match="vgg_normalised.pth does not fit the VGG-19 encoder"):
        load_method("adain", weights, "cpu")


def test_user_vgg_is_used_when_given_even_as_float16_cut_at_relu5_1(weights):
    full = torch.load(packaged_path(VGG), weights_only=True)
    cut = {k: v.half() for k, v in full.items() if int(k.split(".")[0]) <= 42}
    cut["42.weight"] = cut["42.weight"] * 0.5
    torch.save(cut, weights / "vgg_normalised.pth")
    net = load_method("adain", weights, "cpu")
    assert torch.equal(net.encoder.layers[42].weight, cut["42.weight"].float())


def test_tampered_packaged_file_fails_its_checksum(tmp_path, monkeypatch):
    import model.weights

    fake = tmp_path / "vgg_normalised.pth"
    torch.save(torch.load(packaged_path(VGG), weights_only=True), fake)
    monkeypatch.setattr(model.weights, "packaged_path", lambda wf: fake)
    with pytest.raises(WeightsError, match="vgg_normalised.pth is not the expected"):
        load_method("adain", None, "cpu")


def test_check_weights_flags_a_bad_file(weights):
    from model.check_weights import main

    (weights / "sanet/decoder_iter_500000.pth").write_bytes(b"\x00" * 10)
    assert main([str(weights)]) == 1


def test_check_weights_lists_every_file_and_refuses_a_missing_folder(tmp_path, capsys):
    from model.check_weights import main
    from model.weights import KNOWN

    assert main([]) == 0
    listing = capsys.readouterr().out
    for wf in KNOWN:
        assert f"{wf.path}\n    {wf.purpose}\n    from {wf.source}\n" in listing
    assert main([str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err


def test_shipped_trained_weights_have_their_sha256_and_a_tampered_copy_fails(tmp_path, monkeypatch):
    import shutil

    import model.weights
    from model.files import sha256_file
    from model.weights import REPO_WEIGHTS, TRAINED

    files = [wf for group in TRAINED.values() for wf in group.values()]
    assert all(sha256_file(REPO_WEIGHTS / wf.path) == wf.sha256 for wf in files)
    shutil.copytree(REPO_WEIGHTS, tmp_path / "weights")
    state = torch.load(tmp_path / "weights" / TRAINED["sanet_here"]["decoder"].path, weights_only=True)
    state["1.bias"] = state["1.bias"] + 1
    torch.save(state, tmp_path / "weights" / TRAINED["sanet_here"]["decoder"].path)
    monkeypatch.setattr(model.weights, "REPO_WEIGHTS", tmp_path / "weights")
    with pytest.raises(WeightsError, match="decoder_iter_500000.pth is not the expected"):
        load_method("sanet_here", None, "cpu")
