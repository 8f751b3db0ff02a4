"""instructor, as its users write it, against a clinvk base URL: prints the object it extracted, as JSON.

Run with the interpreter of .venv-clients (instructor cannot share the main venv); see
tests/e2e/test_clients.py. Usage: instructor_client.py BASE_URL MODEL MODE
"""

import sys

import instructor
from openai import OpenAI
from pydantic import BaseModel


class Forecast(BaseModel):
    city: str
    highs: list[float]


def main() -> None:
    base_url, model, mode = sys.argv[1:4]
    client = instructor.from_openai(OpenAI(base_url=base_url, api_key="x", max_retries=0), mode=instructor.Mode[mode])
    forecast = client.chat.completions.create(
        model=model,
        response_model=Forecast,
        max_retries=0,
        messages=[{"role": "user", "content": "The forecast for Paris."}],
    )
    print(forecast.model_dump_json())


if __name__ == "__main__":
    main()
