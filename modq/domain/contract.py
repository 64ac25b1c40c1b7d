"""The model contract: what an ONNX file must say about itself for the worker to run it.

Training writes one JSON document under the metadata key `modq.contract`; the worker reads
it back through ONNX Runtime, so labels, preprocessing and version can never drift apart
from the weights they belong to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modq.domain.preprocess import PreprocessSpec
from modq.errors import ConfigError, ModelContractError

METADATA_KEY = "modq.contract"
CONTRACT_SCHEMA = 1


class DetectorHead(BaseModel):
    """An extra output of the same graph: per-label scores for one detector (e.g. prohibited)."""

    model_config = ConfigDict(frozen=True)

    output: str
    labels: list[str]


class ModelContract(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: int = CONTRACT_SCHEMA
    model_version: str
    labels: list[str] = Field(min_length=2)
    input_name: str = "image"
    output_name: str = "category_probs"
    # True when the output already holds probabilities (softmax inside the graph).
    output_is_probability: bool = True
    preprocess: PreprocessSpec = PreprocessSpec()
    detectors: dict[str, DetectorHead] = Field(default_factory=dict)
    # Free-form provenance: data hash, validation metrics, training command.
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_labels(self) -> ModelContract:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    def to_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: self.model_dump_json()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelContract:
        raw = metadata.get(METADATA_KEY)
        if raw is None:
            raise ModelContractError(
                f"{source} has no '{METADATA_KEY}' metadata: was it exported by modq-train?"
            )
        try:
            contract = cls.model_validate(json.loads(raw))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ModelContractError(f"{source}: invalid '{METADATA_KEY}' metadata: {exc}") from exc
        if contract.schema_version != CONTRACT_SCHEMA:
            raise ModelContractError(
                f"{source}: contract schema {contract.schema_version}, "
                f"this worker reads {CONTRACT_SCHEMA}"
            )
        return contract


def read_contract(path: Path) -> ModelContract:
    """The contract of the ONNX file at `path`, read without optimising the graph.

    ONNX Runtime is imported here, not at module level, so that a producer which only
    validates events (`modq.ingest.publish`) pays for it on its first submit, not on import.
    """
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ConfigError(f"model file not found: {path} (set MODQ_MODEL_PATH)")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own untyped errors for bad files
        raise ModelContractError(f"cannot load ONNX model {path}: {exc}") from exc
    return ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
