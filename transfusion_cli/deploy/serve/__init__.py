"""`tfx serve`: a web page for clinicians and an HTTP API for systems, on top of torch-free
predict (FastAPI + uvicorn, the optional ``serve`` extra). Images stay in memory."""
