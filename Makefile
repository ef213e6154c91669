# Two commands: `make dev` runs the whole system locally, `make test` runs every test.
# Both install what is missing (cached in ~/.cache/postback-service) and start
# the local stand-ins of DynamoDB and SQS on 127.0.0.1.

.PHONY: dev test bench bench-cost bench-prototype fuzz deploy-check lint-template lambda-events screenshots stack-stop clean

dev:
	scripts/dev.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

# The metered cost per conversion alone (part of make bench).
bench-cost:
	scripts/bench.sh --cost

# The writes of a data model that is not built, metered (ARCHITECTURE.md).
bench-prototype:
	scripts/bench.sh --prototype-outbox

fuzz:
	scripts/fuzz.sh

# The deploy path without an AWS account: installs the SAM CLI and
# cargo-lambda, sam validate --lint, sam build (arm64) from a clean target.
deploy-check:
	scripts/deploy-check.sh

# With `make dev` running: live ids into .local/dev/events/ for `cargo lambda invoke`.
lambda-events:
	scripts/lambda-events.sh

# The console's main screens at desktop and phone width, into docs/screenshots/.
screenshots:
	scripts/screenshots.sh

lint-template:
	"$$(scripts/stack.sh venv)/bin/python" scripts/lint_template.py

stack-stop:
	scripts/stack.sh stop dev; scripts/stack.sh stop test

clean: stack-stop
	rm -rf .local target
