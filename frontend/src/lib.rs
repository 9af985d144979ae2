//! ONNX frontend (to be filled)
