"""The studies the CLI runs, as a library: system points by name (:mod:`.points`), sweeps (:mod:`.sweep`),
the paper's reproduction (:mod:`.reproduction`, :mod:`.reproduce`), the serving study (:mod:`.serving`)
and the validation of the queue RTL against its cycle model (:mod:`.validation`)."""
