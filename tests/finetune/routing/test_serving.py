"""Serving self-hosted students: every replica of a ``vllm`` upstream loads the student and
lists it, a replica that does not is named with its reason, students nothing can return to are
unloaded, and a ``transformers`` upstream is asked for the merged model's path, every replica
listing it or loading it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune import (
    ServedUpstream,
    StudentNotFound,
    StudentNotServed,
    StudentServing,
    local_job_id,
    local_student_locator,
)
from tests.finetune.routing.lora_fake import FakeLoraFleet
from tests.finetune.routing.transformers_fake import (
    FakeTransformersFleet,
    FakeTransformersReplica,
)

STUDENT = "ft:Qwen2.5-0.5B:local:support:ftjob-1"
OTHER = "ft:Qwen2.5-0.5B:local:support:ftjob-2"


def job_folder(root: Path, job_id: str, *, merged: bool = False) -> Path:
    """What a local training job leaves: adapter/ and, when merged, merged/."""
    adapter = root / job_id / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    if merged:
        (root / job_id / "merged").mkdir()
        (root / job_id / "merged" / "config.json").write_text("{}")
    return root / job_id


def serving(
    fleet: FakeLoraFleet, root: Path, *, kind: str = "vllm", api_key: str | None = None
) -> StudentServing:
    upstream = ServedUpstream(
        name="gpu",
        kind=kind,  # type: ignore[arg-type]
        replicas=fleet.urls,
        api_key=api_key,
    )
    return StudentServing(
        {"gpu": upstream}, local_student_locator([root]), transport=fleet.transport()
    )


def test_the_job_id_is_the_last_part_of_a_local_students_name() -> None:
    assert local_job_id(STUDENT) == "ftjob-1"
    assert local_job_id("ft:base:local:ftjob-9") is None
    assert local_job_id("ft:org/base:local::ftjob-9") == "ftjob-9"
    assert local_job_id("ft:gpt-4o-mini:acme:support:abc123") is None
    assert local_job_id("gpt-4o") is None


def test_every_replica_loads_the_adapter_from_the_job_folder_and_lists_it(
    tmp_path: Path,
) -> None:
    fleet = FakeLoraFleet(2)
    folder = job_folder(tmp_path, "ftjob-1")
    serving(fleet, tmp_path).prepare("gpu", STUDENT)
    for replica in fleet.replicas.values():
        assert replica.adapters == {STUDENT: str(folder / "adapter")}
        assert replica.calls == ["GET models", "POST load_lora_adapter", "GET models"]


def test_a_student_every_replica_lists_already_is_not_loaded_again(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(2)
    job_folder(tmp_path, "ftjob-1")
    service = serving(fleet, tmp_path)
    service.prepare("gpu", STUDENT)
    service.prepare("gpu", STUDENT)
    assert [r.calls.count("POST load_lora_adapter") for r in fleet.replicas.values()] == [1, 1]


def test_a_replica_that_refuses_the_load_is_named_with_its_reason(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(3)
    job_folder(tmp_path, "ftjob-1")
    fleet.replicas["http://replica-2/v1"].refuse_loads = True
    with pytest.raises(StudentNotServed) as refused:
        serving(fleet, tmp_path).prepare("gpu", STUDENT)
    assert refused.value.code == "student_not_served"
    assert refused.value.message == (
        f"1 of 3 replicas of upstream 'gpu' do not serve '{STUDENT}': http://replica-2/v1: "
        f"load_lora_adapter answered 400: Failed to load LoRA adapter '{STUDENT}': no such folder"
    )
    # The others did load it; a later promotion's sweep unloads it if it never serves.
    assert STUDENT in fleet.replicas["http://replica-3/v1"].adapters


def test_a_replica_that_is_down_or_does_not_list_the_student_fails_the_load(
    tmp_path: Path,
) -> None:
    fleet = FakeLoraFleet(2)
    job_folder(tmp_path, "ftjob-1")
    fleet.replicas["http://replica-1/v1"].down = True
    fleet.replicas["http://replica-2/v1"].forget_after_load = True
    with pytest.raises(StudentNotServed) as refused:
        serving(fleet, tmp_path).prepare("gpu", STUDENT)
    message = refused.value.message
    assert message.startswith(f"2 of 2 replicas of upstream 'gpu' do not serve '{STUDENT}': ")
    assert "http://replica-1/v1: GET http://replica-1/v1/models: ConnectError" in message
    assert "http://replica-2/v1: loaded, but GET /models does not list it" in message


def test_a_student_with_no_adapter_in_any_job_folder_is_not_found(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(1)
    (tmp_path / "ftjob-1").mkdir()  # a job folder without adapter/
    with pytest.raises(StudentNotFound) as refused:
        serving(fleet, tmp_path).prepare("gpu", STUDENT)
    assert refused.value.code == "adapter_not_found"
    assert fleet.replicas["http://replica-1/v1"].calls == []


def test_an_openai_upstream_or_an_unknown_one_has_nothing_to_load(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(1)
    serving(fleet, tmp_path, kind="openai").prepare("gpu", "ft:gpt-4o-mini:acme::abc")
    serving(fleet, tmp_path).prepare("default", STUDENT)
    assert fleet.replicas["http://replica-1/v1"].calls == []


def test_the_upstreams_own_key_is_sent_to_every_replica(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(2)
    job_folder(tmp_path, "ftjob-1")
    serving(fleet, tmp_path, api_key="sk-vllm").prepare("gpu", STUDENT)
    sent = {a for r in fleet.replicas.values() for a in r.authorizations}
    assert sent == {"Bearer sk-vllm"}


def test_release_unloads_the_students_not_kept_and_leaves_other_adapters(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(2)
    for replica in fleet.replicas.values():
        replica.adapters = {STUDENT: "/a", OTHER: "/b", "sql-lora": "/c"}
    unloaded = serving(fleet, tmp_path).release("gpu", keep=[STUDENT])
    assert unloaded == [OTHER, OTHER]
    for replica in fleet.replicas.values():
        assert sorted(replica.adapters) == [STUDENT, "sql-lora"]


def test_release_goes_on_past_a_replica_that_is_down(tmp_path: Path) -> None:
    fleet = FakeLoraFleet(2)
    fleet.replicas["http://replica-1/v1"].down = True
    fleet.replicas["http://replica-2/v1"].adapters = {OTHER: "/b"}
    assert serving(fleet, tmp_path).release("gpu", keep=[]) == [OTHER]


def transformers_serving(fleet: FakeTransformersFleet, root: Path) -> StudentServing:
    upstream = ServedUpstream(name="laptop", kind="transformers", replicas=fleet.urls)
    return StudentServing(
        {"laptop": upstream}, local_student_locator([root]), transport=fleet.transport()
    )


def test_a_transformers_upstream_is_asked_for_the_merged_models_path(tmp_path: Path) -> None:
    merged = str(job_folder(tmp_path, "ftjob-1", merged=True) / "merged")
    replica = FakeTransformersReplica(pinned=merged)
    service = transformers_serving(FakeTransformersFleet(replica), tmp_path)
    service.prepare("laptop", STUDENT)
    assert service.upstream_model("laptop", STUDENT) == merged
    assert service.upstream_model("laptop", "gpt-4o") == "gpt-4o"
    assert service.upstream_model("default", STUDENT) == STUDENT
    assert replica.calls == ["GET /v1/models"]  # pinned to it: nothing to load


def test_a_transformers_server_started_without_a_model_is_asked_to_load_the_student(
    tmp_path: Path,
) -> None:
    merged = str(job_folder(tmp_path, "ftjob-1", merged=True) / "merged")
    replicas = FakeTransformersReplica(), FakeTransformersReplica(loaded=["/models/base"])
    transformers_serving(FakeTransformersFleet(*replicas), tmp_path).prepare("laptop", STUDENT)
    for replica in replicas:
        assert replica.loaded[-1] == merged
        assert replica.calls == ["GET /v1/models", "POST /load_model", "GET /v1/models"]


def test_a_transformers_replica_pinned_elsewhere_or_down_is_named_with_its_reason(
    tmp_path: Path,
) -> None:
    merged = str(job_folder(tmp_path, "ftjob-1", merged=True) / "merged")
    fleet = FakeTransformersFleet(
        FakeTransformersReplica(pinned="/models/previous-student"),
        FakeTransformersReplica(down=True),
        FakeTransformersReplica(no_load_route=True),
        FakeTransformersReplica(pinned=merged),
    )
    with pytest.raises(StudentNotServed) as refused:
        transformers_serving(fleet, tmp_path).prepare("laptop", STUDENT)
    message = refused.value.message
    assert message.startswith(f"3 of 4 replicas of upstream 'laptop' do not serve '{STUDENT}': ")
    assert (
        f"http://serve-1:8000/v1: load_model refused {merged}: Server is pinned to "
        f"'/models/previous-student'; requested '{merged}'." in message
    )
    assert "http://serve-2:8000/v1: GET http://serve-2:8000/v1/models: ConnectError" in message
    assert "http://serve-3:8000/v1: POST /load_model answered 404: Not Found" in message
    assert "serve-4" not in message
    assert message.endswith(
        f"(start `transformers serve {merged}` there, or a "
        "`transformers serve` without a model, which loads it when asked)"
    )
    assert refused.value.code == "student_not_served"


def test_a_transformers_upstream_refuses_a_student_that_was_not_merged(tmp_path: Path) -> None:
    job_folder(tmp_path, "ftjob-1")
    with pytest.raises(StudentNotFound) as refused:
        serving(FakeLoraFleet(1), tmp_path, kind="transformers").prepare("gpu", STUDENT)
    assert refused.value.code == "student_not_merged"
