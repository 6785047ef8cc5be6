"""Pictures drawn from arrays: the figure style and PNG saving (`plots`), the confusion matrix (`confusion`).

May import: core, numpy, pandas, matplotlib. Nothing of the model or the data pipeline: the stages that
compute what is drawn (training reports, inference timelines, the examples grid) call in here.
"""
