"""A minimal Faust app for the foundation test: uppercases values from one topic into another.

Run as a separate process: python faust_echo_app.py worker  (env: ECHO_APP_ID, ECHO_IN, ECHO_OUT, BROKER)
"""

import os

import faust

app = faust.App(
    os.environ["ECHO_APP_ID"],
    broker=os.environ.get("BROKER", "kafka://127.0.0.1:9092"),
    value_serializer="raw",
    web_enabled=False,
    topic_partitions=2,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["ECHO_IN"], value_type=bytes, key_type=bytes)
sink = app.topic(os.environ["ECHO_OUT"], value_type=bytes, key_type=bytes)


@app.agent(source)
async def echo(stream):
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value.upper())


if __name__ == "__main__":
    app.main()
