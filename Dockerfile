FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY conf ./conf
RUN pip install --no-cache-dir .
ENTRYPOINT ["pipeline"]
CMD ["run", "conf/demo.yaml"]
