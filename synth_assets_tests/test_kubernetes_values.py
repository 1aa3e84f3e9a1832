"""deploy/kubernetes/values.yaml, the Helm values of the Kubernetes deployment: no cluster
runs here, so this reads the file and checks the keys the deployment depends on."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from synth_assets.settings import EXECUTOR_ENV, Settings

REPOSITORY = Path(__file__).resolve().parents[1]
VALUES = yaml.safe_load((REPOSITORY / "deploy" / "kubernetes" / "values.yaml").read_text())


def code_location() -> dict:
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    return deployment


def test_runs_and_steps_are_kubernetes_jobs():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in VALUES["runLauncher"]["config"]
    environment = {item["name"]: item["value"] for item in code_location()["env"]}
    assert environment[EXECUTOR_ENV] == "k8s"
    # The step pods get the code location's environment and volumes.
    assert code_location()["includeConfigInLaunchedRuns"]["enabled"] is True


def test_the_code_location_is_this_package():
    module = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    deployment = code_location()
    assert deployment["codeServerArgs"] == ["-m", module]
    assert VALUES["dagster-user-deployments"]["enabled"] and VALUES["dagster-user-deployments"]["enableSubchart"]
    assert deployment["image"]["tag"] not in ("", "latest")  # every step of a run runs the same code
    mounted = {mount["name"] for mount in deployment["volumeMounts"]}
    assert mounted == {volume["name"] for volume in deployment["volumes"]}


def test_the_settings_accept_the_code_locations_environment():
    pytest.importorskip("dagster_k8s", reason="the `k8s` extra (dagster-k8s) is not installed")
    environment = {item["name"]: item["value"] for item in code_location()["env"]}
    settings = Settings.from_env(environment)
    assert settings.executor.name == "k8s"
    database = settings.resources["duckdb"]
    assert database.ducklake_catalog.startswith("postgres:")
    assert database.ducklake_data_path.startswith("s3://")  # step pods share no local folder


def test_the_instance_is_the_teams_postgresql_and_no_password_is_in_the_file():
    postgresql = VALUES["postgresql"]
    assert postgresql["enabled"] is False and postgresql["postgresqlHost"]
    assert postgresql["postgresqlScheme"] == "postgresql+psycopg2"  # as deploy/team/dagster.yaml
    assert "postgresqlPassword" not in postgresql
    assert VALUES["generatePostgresqlPasswordSecret"] is False and VALUES["global"]["postgresqlSecretName"]
