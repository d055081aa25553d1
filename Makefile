# make lib     builds lib/libdiaspora_shm.so (the C library; header capi/diaspora_shm.h)
# make python  also puts it into python/diaspora_shm/, so that
#              PYTHONPATH=python python3 -c 'import diaspora_shm.api' works and
#              `pip install ./python` installs it
# make test    the test command of README.md

GO ?= go

.PHONY: lib python test clean

lib:
	mkdir -p lib
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -o lib/libdiaspora_shm.so ./capi
	rm -f lib/libdiaspora_shm.h  # cgo's header; the interface is capi/diaspora_shm.h
	cp capi/diaspora_shm.h lib/

python: lib
	cp lib/libdiaspora_shm.so python/diaspora_shm/

test:
	bash scripts/test.sh

clean:
	rm -rf lib python/diaspora_shm/libdiaspora_shm.so python/build python/*.egg-info
