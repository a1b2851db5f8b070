"""What survives a warm reset of the board (PSCI SYSTEM_RESET): the platform's own state.

RAM, CPUs and devices are rebuilt for every boot (armras.drive.session makes a new
Machine); the platform firmware keeps what real firmware keeps in flash or reserved
memory: the error records for the next boot's BERT (a fatal error that ended this boot,
or records the user put there), the ERST's record store (armras.ras.erst: in memory, or
a host file that outlives the run), the UEFI variables, and, if the user asks, the poisoned pages.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from armras.firmware.efivars import VariableStore
from armras.ras.erst import ErstStore

MAX_BERT_RECORDS = 64            # a reboot loop with fatal errors must not grow without bound


@dataclass
class PersistentState:
    boot: int = 0                                        # 0 for the first boot of the run
    bert_records: list[bytes] = field(default_factory=list)   # this boot's BERT region
    next_bert: list[bytes] = field(default_factory=list)      # fatal records of this boot
    poisoned: set[int] = field(default_factory=set)           # carried only with keep_poison
    keep_poison: bool = False
    erst: ErstStore = field(default_factory=ErstStore)        # the same store object every boot
    variables: VariableStore = field(default_factory=VariableStore)   # UEFI variables: the whole run

    def record_fatal(self, estatus: bytes) -> None:
        if len(self.next_bert) < MAX_BERT_RECORDS:
            self.next_bert.append(bytes(estatus))

    def after_reset(self, poisoned: set[int]) -> "PersistentState":
        """The state the next boot starts from."""
        self.variables.reset()
        return PersistentState(boot=self.boot + 1, bert_records=list(self.next_bert),
                               poisoned=set(poisoned) if self.keep_poison else set(),
                               keep_poison=self.keep_poison, erst=self.erst,
                               variables=self.variables)


__all__ = ["MAX_BERT_RECORDS", "PersistentState"]
