"""What an export says about the host it runs on: the CPU, whether latency is judged, no native log lines."""

import json
import os

import pytest

from keras_cnn import hardware
from keras_cnn.export import layout, litert_runtime, servable_for, tflite
from keras_cnn.tasks import open_run
from tests.export_helpers import colour_run

AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile
"""
PHONE = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp
Hardware\t: Qualcomm Technologies, Inc SM8150
"""


def test_cpu_features_are_read_from_cpuinfo():
    assert hardware.cpu_name(AVX2_ONLY) == "AMD EPYC 7B13"
    assert hardware.int8_dot_product(hardware.cpu_flags(AVX2_ONLY)) == ()
    assert hardware.int8_dot_product(hardware.cpu_flags(VNNI)) == ("AMX-INT8", "AVX512-VNNI")
    assert hardware.int8_dot_product(hardware.cpu_flags(PHONE)) == ("ARM dot product",)
    assert hardware.cpu_name(PHONE) == "Qualcomm Technologies, Inc SM8150"
    assert hardware.cpu_flags("") is None and hardware.int8_dot_product(frozenset()) == ()
    assert "no int8 dot-product instructions" in hardware.describe(AVX2_ONLY)
    assert "AMX-INT8" in hardware.describe(VNNI)


def report(variant, latency):
    return {"variant": variant, "agreement_with_keras": {"argmax_agreement": 1.0, "mean_abs_diff": 0.0},
            "size_vs_float32": 0.25, "latency_vs_float32": latency}


def test_latency_is_judged_only_where_int8_can_be_fast():
    judged, why = tflite.latency_verdict(("AVX512-VNNI",))
    assert judged and "AVX512-VNNI" in why
    targets = tflite.judge(report("int8", 1.18), "segmentation", {}, judged)
    assert targets["latency_vs_float32"] == {"value": 1.18, "target": 0.5, "met": False}
    line = tflite.latency_line({"int8": report("int8", 1.18)}, judged, why)
    assert line.startswith("latency judged against the 0.5x float32 target")

    judged, why = tflite.latency_verdict(())
    assert not judged and "no int8 dot-product instructions (AVX512-VNNI/AMX)" in why
    targets = tflite.judge(report("int8", 1.18), "segmentation", {}, judged)
    assert "latency_vs_float32" not in targets and targets["size_vs_float32"]["met"]
    reports = {"float32": report("float32", 1.0), "dynamic": report("dynamic", 1.05), "int8": report("int8", 1.18)}
    rep = dict(reports["int8"], size_bytes=1024, latency_ms=1.0, latency_threads=1,
               agreement_with_keras={"argmax_agreement": 1.0, "mean_abs_diff": 0.0, "images": 4}, targets=targets)
    assert "MISSED" not in tflite.summary_line(rep) and "(1.18x float32)" in tflite.summary_line(rep)
    line = tflite.latency_line(reports, judged, why)
    assert line.startswith("latency not judged: this host's CPU")
    assert line.endswith("dynamic ran 1.05x float32, int8 ran 1.18x float32 here")
    assert tflite.latency_line({"float32": reports["float32"]}, judged, why) is None

    judged, why = tflite.latency_verdict(None)
    assert not judged and "cannot be read" in why


@pytest.mark.parametrize("int8_fast", [False, True])
def test_export_says_what_the_host_is_and_prints_no_converter_lines(tmp_path, capfd, monkeypatch, int8_fast):
    run_dir, _ = colour_run(str(tmp_path), num_filters=4)
    monkeypatch.setattr(hardware, "int8_dot_product", lambda flags=None: ("AVX512-VNNI",) if int8_fast else ())
    capfd.readouterr()
    lines = []
    summary = layout.export_model(servable_for(open_run(run_dir), image_size=16), str(tmp_path / "out"), "unet",
                                  ("tflite_float32", "tflite_int8"), check_count=2, representative_count=4,
                                  log=lines.append)
    out, err = capfd.readouterr()
    # TensorFlow's converter and LiteRT write these from C++; the export keeps them off the terminal.
    assert "fully_quantize" not in err + out and "XNNPACK delegate" not in err + out, err
    int8 = summary["tflite"]["reports"]["int8"]
    assert int8["latency_target"]["judged"] == int8_fast
    assert ("latency_vs_float32" in int8["targets"]) == int8_fast
    assert int8["host_cpu"]["name"] == hardware.cpu_name()
    verdict = [ln for ln in lines if ln.startswith("latency ")]
    assert len(verdict) == 1
    if int8_fast:
        assert verdict[0].startswith("latency judged")
    else:
        assert verdict[0].startswith("latency not judged") and "int8 ran" in verdict[0]
        assert not [ln for ln in lines if "latency" in ln and "MISSED" in ln.split("argmax")[0]]
    folder = summary["tflite"]["path"]
    with open(os.path.join(folder, "unet_int8_report.json")) as f:
        assert json.load(f)["latency_target"]["judged"] == int8_fast


def test_native_lines_other_than_the_known_noise_still_show(capfd):
    with litert_runtime.quiet_native_stderr():
        os.write(2, b"fully_quantize: 0, inference_type: 6\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                    b"something real went wrong\n")
    assert capfd.readouterr().err == "something real went wrong\n"
