"""``rkt-operator convert`` on chosen inputs: the three job forms agree, unreadable files
are reported with file, line and reason, interpolation gives the argv Nomad gave, and the
node, count and resource rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from convertlib import CORPUS, convert, convert_corpus

from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.rkt.argv import expand_args


def _bodies(name: str) -> list[dict[str, object]]:
    run = convert_corpus(name)
    assert run.code == 0, run.stderr
    return run.documents


def test_hcl1_hcl2_and_api_json_of_one_job_give_the_same_manifests() -> None:
    hcl1 = _bodies("same-job.hcl1.nomad")
    assert len(hcl1) == 2  # count = 2
    assert _bodies("same-job.hcl2.hcl") == hcl1
    assert _bodies("same-job.json") == hcl1
    spec = hcl1[1]["spec"]
    assert isinstance(spec, dict)
    assert spec["nodeName"] == "node-b"
    assert spec["ports"] == [{"name": "client", "hostPort": 12379}]
    assert spec["resources"] == {"limits": {"memory": "64Mi", "cpu": "250m"}}
    assert spec["killTimeoutSeconds"] == 12
    assert spec["logs"] == {"maxFiles": 3, "maxFileSizeMB": 5}
    assert spec["user"] == "kv"
    assert spec["dnsServers"] == ["none"]


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        ("broken-syntax.nomad", 7, "HCL2: unexpected"),
        ("broken.json", 5, "invalid JSON: Expecting property name"),
    ],
)
def test_unreadable_input_exits_1_with_file_line_and_reason(
    name: str, line: int, reason: str
) -> None:
    run = convert_corpus(name)
    assert run.code == 1
    assert run.stdout == ""
    assert run.stderr.startswith(f"error: {name}:{line}: {reason}")


def test_one_unreadable_file_among_good_ones_writes_nothing() -> None:
    run = convert(
        "--node=n1", str(CORPUS / "same-job.hcl1.nomad"), str(CORPUS / "broken-syntax.nomad")
    )
    assert (run.code, run.stdout) == (1, "")
    assert "broken-syntax.nomad:7:" in run.stderr


def test_a_file_that_is_not_a_job_exits_1() -> None:
    run = convert_corpus("not-a-job.hcl")
    assert run.code == 1
    assert "not-a-job.hcl: not a Nomad job" in run.stderr


def test_hcl1_only_syntax_falls_back_to_the_hcl1_parser() -> None:
    # HCL1 accepted a block assigned with '=' to a list of objects; HCL2 does not parse it.
    text = (
        'job "j" {\n group "g" {\n  task "t" {\n   driver = "rkt"\n   config = {\n'
        '    image = "example.com/a:1"\n    port_map = [{\n     web = "http"\n    }]\n'
        "   }\n  }\n }\n}\n"
    )
    run = convert("--node=n1", "-", stdin=text)
    assert run.code == 0, run.stderr
    assert run.documents[0]["spec"]["ports"] == [{"name": "http"}]
    forced = convert("--node=n1", "--syntax=hcl1", "-", stdin=text)
    assert forced.documents == run.documents


def test_args_interpolation_expands_by_the_agent_to_what_nomad_passed() -> None:
    docs = _bodies("hcl1-every-option.nomad")
    spec = RktTaskSpec.model_validate(docs[0]["spec"])
    env = {v.name: v.value or "" for v in spec.env if v.value is not None}
    assert env["DATA_DIR"] == "/local/db"  # env values are resolved at conversion
    assert list(expand_args(spec.args, env)) == [
        "--listen", ":18080", "--data", "/local/db", "--price=$5",
    ]  # fmt: skip


def test_literal_dollars_and_unknown_references_survive_the_agents_expansion() -> None:
    run = convert_corpus("hcl2-count-constraints.hcl")
    spec = RktTaskSpec.model_validate(run.documents[0]["spec"])
    env = {v.name: v.value or "" for v in spec.env if v.value is not None}
    assert list(expand_args(spec.args, env)) == [
        "-m", "128", "-v", "${NOT_INTERPOLATED}", "-p", "$(port)",
    ]  # fmt: skip
    assert env["BANNER"].startswith("memcached for cache")


def test_count_instances_are_spread_over_the_nodes_and_pinned_groups_keep_their_node() -> None:
    run = convert_corpus("hcl2-count-constraints.hcl")
    placed = {d["metadata"]["name"]: d["spec"]["nodeName"] for d in run.documents}
    assert placed == {
        "cache-memcache-memcached-0": "node-a",
        "cache-memcache-memcached-1": "node-b",
        "cache-memcache-memcached-2": "node-a",
        "cache-pinned-warmer": "node-b",  # constraint ${node.unique.name} = node-b
    }
    assert run.code == 2  # the other constraints, the Consul service...
    assert 'stanza "affinity": ${node.class}' in run.stderr


def test_same_static_port_twice_on_one_node_is_a_warning() -> None:
    run = convert("--node=only", str(CORPUS / "same-job.hcl1.nomad"))
    assert run.code == 2
    assert "both bind host port 12379/TCP on node only" in run.stderr


def test_without_a_node_the_task_is_left_to_the_binder() -> None:
    run = convert(str(CORPUS / "same-job.hcl1.nomad"))
    assert run.code == 0, run.stderr
    assert [d["spec"].get("nodeName") for d in run.documents] == [None, None]
    assert "the binder (rkt-operator schedule) binds the task" in run.stderr


def test_system_job_gets_one_instance_per_node() -> None:
    run = convert("--node=a", "--node=b", "--node=c", str(CORPUS / "system-job.nomad"))
    assert [d["spec"]["nodeName"] for d in run.documents] == ["a", "b", "c"]


def test_cpu_mhz_become_millicores_or_cores_at_a_given_clock() -> None:
    plain = convert("--node=a", str(CORPUS / "hcl1-every-option.nomad"))
    clocked = convert(
        "--node=a", "--cpu-mhz-per-core=2000", str(CORPUS / "hcl1-every-option.nomad")
    )
    assert plain.documents[0]["spec"]["resources"]["limits"]["cpu"] == "750m"
    assert clocked.documents[0]["spec"]["resources"]["limits"]["cpu"] == "375m"


def test_other_drivers_templates_vault_and_artifacts_are_warnings_naming_the_stanza() -> None:
    run = convert_corpus("api-batch-templates.json")
    assert run.code == 2
    lines = run.stderr.splitlines()
    for stanza in ("driver", "template", "vault", "artifact", "periodic"):
        assert any(f'stanza "{stanza}"' in line and line.startswith("warning:") for line in lines)
    assert 'job "report" group "nightly" task "upload" stanza "driver"' in run.stderr
    env = {e["name"]: e for e in run.documents[0]["spec"]["env"]}
    assert env["DB_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "report-nightly-render-env", "key": "DB_PASSWORD"}
    }
    assert run.documents[0]["spec"]["restartPolicy"] == "Never"  # batch, attempts 0


def test_no_nomad_env_leaves_only_the_jobs_env() -> None:
    run = convert("--node=a", "--no-nomad-env", str(CORPUS / "same-job.hcl1.nomad"))
    assert run.documents[0]["spec"]["env"] == [{"name": "KV_MODE", "value": "replica"}]


def test_output_dir_gets_one_file_per_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = convert("--node=a", "--node=b", "-o", str(out), str(CORPUS / "same-job.hcl1.nomad"))
    assert (run.code, run.stdout) == (0, "")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["kv-store-kv-0.yaml", "kv-store-kv-1.yaml"]
    assert yaml.safe_load((out / files[0]).read_text())["metadata"]["name"] == "kv-store-kv-0"


HCL2_VARIABLES = """
variable "tag" {
  default = "1.0"
}
variable "replicas" {
  default = 2
}
variable "mode" {}
job "v" {
  group "g" {
    count = var.replicas
    task "t" {
      driver = "rkt"
      config {
        image = "example.com/app:${var.tag}"
      }
      env {
        MODE  = var.mode
        LIMIT = 10 * 2
      }
    }
  }
}
"""


def test_hcl2_variables_take_defaults_or_var_values_and_other_expressions_are_reported() -> None:
    run = convert("--node=a", "-", stdin=HCL2_VARIABLES)
    assert [d["spec"]["image"] for d in run.documents] == ["example.com/app:1.0"] * 2
    assert run.code == 2  # var.mode has no value, 10 * 2 is not evaluated
    assert 'stanza "env.MODE": the expression ${var.mode} is not evaluated' in run.stderr
    assert 'stanza "env.LIMIT": the expression ${10 * 2} is not evaluated' in run.stderr
    given = convert("--node=a", "--var=tag=2.5", "--var=mode=fast", "--var=replicas=3", "-",
                    stdin=HCL2_VARIABLES)  # fmt: skip
    images = [d["spec"]["image"] for d in given.documents]
    assert images == ["example.com/app:2.5"] * 3  # --var values are strings, as Nomad's -var
    env = {e["name"]: e.get("value") for e in given.documents[0]["spec"]["env"]}
    assert env["MODE"] == "fast"
    bad = convert("--var=novalue", "-", stdin=HCL2_VARIABLES)
    assert bad.code == 2
    assert "expected NAME=VALUE" in bad.stderr
