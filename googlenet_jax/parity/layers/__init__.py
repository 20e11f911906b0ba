"""The layer-by-layer comparison: the same weights in torch and in ours, stage by stage.

    args        its options and their checks (the standard library only)
    run         what the command runs: both models, the inputs, `compare`
    compare     compare(flax_module, variables, torch_module, inputs, ...) -> ParityReport, the stages
    report      Row, ParityReport, TOLERANCES: the header, table and JSON the command prints
    flax_side   our stages through the model's own `capture=`, and the loss gradient
    torch_side  forward hooks on the reference, its BatchNorm records and gradients
"""
