"""From trained runs to answers: sliding-window prediction and the Kaggle submission (`predict`,
`submission`), the waveform-in serving model (`serving`), detection timelines (`timelines`).

May import: every stage before it (pictures ... training).
"""
