"""wclust doctor and wclust --version: what they print agrees with the kernel-choice table."""
import json

from wclust import cli
from wclust.kernels import choice, cpu, machine


def test_doctor_json_is_the_table_of_this_machine(capsys):
    assert cli.main(["doctor", "--json", "--rows", "1", "197"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["cpu"] == json.loads(json.dumps(machine.cpu())) and r["isa"] == cpu.isa()
    assert {t["rows"] for t in r["table"]} == {1, 197}
    for t in r["table"]:
        assert t["kernel"] == choice.choose(cpu.case(t["rows"], t["index_bits"], t["k"], t["compute"]))


def test_doctor_text_names_the_cpu_and_every_kernel_it_lists(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert machine.cpu()["model"] in out and "int8" in out
    listed = out.split("kernels:")[1]
    assert all(name in listed for name in {t["kernel"] for t in choice.table(cpu.case(1, 8, 64))})


def test_version_names_torch_and_the_isa(capsys):
    import torch

    try:
        cli.main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert out.startswith("wclust ") and torch.__version__ in out and cpu.isa() in out
