"""`cnnsweep predict`: a model and many inputs -> a predictions CSV (id,label,class_name,prob[,top-k]).

No Ray here (cnnsweep.distributed.predict runs the same `predict_chunk` as Ray tasks). Layout: inputs
(what INPUTS means, read chunk by chunk), model (MODEL -> a verified ONNX file and its session),
run (chunks -> rows through the serving preprocessing), writer (rows -> CSV).
"""

from cnnsweep.errors import PredictError
from cnnsweep.predict.inputs import Chunk, InputSet, resolve_inputs
from cnnsweep.predict.model import Predictor, load_predictor, resolve_model
from cnnsweep.predict.run import PredictSummary, predict, predict_chunk
from cnnsweep.predict.writer import csv_columns, write_rows

__all__ = ["Chunk", "InputSet", "PredictError", "PredictSummary", "Predictor", "csv_columns", "load_predictor",
           "predict", "predict_chunk", "resolve_inputs", "resolve_model", "write_rows"]
