"""From trained runs to answers: sliding-window prediction and the Kaggle submission (`predict`,
`submission`), its blend with the baseline where the CV report says it pays (`blending`), the waveform-in
serving model (`serving`), detection timelines (`timelines`).

May import: every stage before it (pictures ... training).
"""
