"""`HttpError`: a client mistake, answered as `{"error": "..."}` with a 4xx status."""


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> HttpError:
    return HttpError(400, message)
