"""What the compile steps found, and the module's metadata and the user's report built
from it, each in one place.

Every step hands back a small result object (the imported model, the prune report, the
layout choice, the lowered module, the quantization and drift JSON, the verification);
:class:`Results` collects them, so that the metadata embedded in the .so and
``Compiled.report`` cannot disagree about what a step did.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcc.driver.config import CompileConfig


@dataclass
class Results:
    config: CompileConfig
    imported: object  # mcc.frontends.ImportedModel: inputs, outputs, source, reference
    lowered: object  # mcc.build.lower.Lowered: passes, schedule coverage, bf16 kernels
    pruned: object = None  # --prune: mcc.passes.prune_channels.PruneReport
    layout_choice: object = None  # --layout auto on this CPU: mcc.driver.layout_choice
    quantization: dict | None = None  # --quantize / a quantized model: Quantizer.to_json()
    drift: dict | None = None  # --prune RATIO: outputs vs the unpruned model
    verify: dict | None = None  # VerifyReport.to_json(), or {"skipped": why}
    precision_choice: object = None  # --precision auto: mcc.driver.precision_choice

    def prune(self) -> dict | None:
        if not self.pruned:
            return None
        info = self.pruned.to_json()
        return info if self.drift is None else {**info, "drift": self.drift}

    def precision(self) -> dict | None:
        if self.precision_choice is not None:
            return self.precision_choice.to_json()
        return self.lowered.precision if self.config.precision == "bf16" else None

    def metadata(self) -> dict:
        """What the .so carries about itself (mcc.runtime.metadata reads it back)."""
        import tvm

        from mcc import __version__
        from mcc.runtime.metadata import METADATA_FORMAT

        imported, lowered = self.imported, self.lowered
        metadata = {
            "format": METADATA_FORMAT,
            "mcc_version": __version__,
            "tvm_version": tvm.__version__,
            "target": self.config.target.to_json(),
            "inputs": [t.to_json() for t in imported.inputs],
            "outputs": [t.to_json() for t in imported.outputs],
            "passes": (["mcc.PruneChannels"] if self.pruned else []) + lowered.passes,
            "schedule": lowered.coverage.to_json(),
            "source": imported.source,
            "reference": imported.reference_name,
        }
        rules = imported.feed_plan.rules if imported.feed_plan is not None else None
        if rules:  # value ranges of the integer inputs: run / bench / drift draw in range too
            from mcc.frontends.feeds import rules_to_json

            metadata["feeds"] = rules_to_json(rules)
        return metadata | self._steps()

    def report(self, stages) -> dict:
        """``Compiled.report``: stage timings, schedule coverage, what each step did."""
        report = {"stages": stages.to_json(), "schedule": self.lowered.coverage.to_json()}
        report |= self._steps()
        if self.verify is not None:
            report["verify"] = self.verify
        return report

    def _steps(self) -> dict:
        """The optional steps' results, as both the metadata and the report hold them."""
        found = {"prune": self.prune(), "layout_choice": self.layout_choice and
                 self.layout_choice.to_json(), "quantization": self.quantization,
                 "precision": self.precision()}
        return {key: value for key, value in found.items() if value}
