"""cvpipe: k-fold cross-validated hyperparameter search as one Step Functions workflow."""

__version__ = "0.1.0"
