# Recipes; each is also a plain script under scripts/.

# install what is missing, build, run every role in one process (dev mode)
start:
    bash scripts/start.sh

# vet and run the whole test suite against real servers
test:
    bash scripts/test.sh

# build the binary into bin/
build:
    go build -o bin/messenger ./cmd/messenger

# print a development token for a user
token user:
    go run ./cmd/messenger token {{user}} --dev
