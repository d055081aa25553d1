// Command capi is libdiaspora_shm, the C interface of diaspora-shm. Build it
// with
//
//	go build -buildmode=c-shared -o libdiaspora_shm.so ./capi
//
// and program against diaspora_shm.h beside this file (the header cgo
// writes next to the library is not the interface). shim.c holds the
// public entry points; the functions exported here (dshmgo_*) are their Go
// halves and are not to be called directly.
package main

/*
#cgo CFLAGS: -O2 -Wall
#include <stdlib.h>
#include <string.h>
#include "internal.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver" // the "shm" driver
)

func main() {}

type cDriver struct{ d diaspora.Driver }

type cPool struct{ p diaspora.ThreadPool }

type cTopic struct {
	t diaspora.TopicHandle
	d *cDriver // whose producers the driver's close forgets
}

//export dshmgo_driver_open
func dshmgo_driver_open(backend, options *C.char, out *C.dshm_driver) (st C.int) {
	defer recoverPanic(&st)
	if out == nil {
		return fail(invalid("dshm_driver_open: out is NULL"))
	}
	*out = 0
	name, err := goString(backend, "dshm_driver_open: backend")
	if err != nil {
		return fail(err)
	}
	md, err := jsonArg(options, "dshm_driver_open: options")
	if err != nil {
		return fail(err)
	}
	d, err := diaspora.NewDriver(name, md)
	if err != nil {
		return fail(err)
	}
	*out = C.dshm_driver(newHandle(&cDriver{d}))
	return C.DSHM_OK
}

//export dshmgo_driver_close
func dshmgo_driver_close(h C.dshm_driver) (st C.int) {
	defer recoverPanic(&st)
	d, err := take[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	// The driver closes its producers: their push queues (drained by the
	// caller) and drain goroutines go with them.
	handles.RLock()
	var prods []uint64
	for k, v := range handles.m {
		if p, ok := v.(*cProducer); ok && p.d == d {
			prods = append(prods, k)
		}
	}
	handles.RUnlock()
	err = d.d.Close()
	for _, k := range prods {
		C.dshm__queue_forget(C.dshm_producer(k))
		if p, err := lookup[*cProducer](C.uint64_t(k), "producer"); err == nil {
			p.stopQueue()
		}
	}
	return failOr(err)
}

func failOr(err error) C.int {
	if err != nil {
		return fail(err)
	}
	return C.DSHM_OK
}

//export dshmgo_driver_default_thread_pool
func dshmgo_driver_default_thread_pool(h C.dshm_driver, out *C.dshm_thread_pool) (st C.int) {
	defer recoverPanic(&st)
	d, err := lookup[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_driver_default_thread_pool: out is NULL"))
	}
	*out = C.dshm_thread_pool(newHandle(&cPool{d.d.DefaultThreadPool()}))
	return C.DSHM_OK
}

//export dshmgo_driver_make_thread_pool
func dshmgo_driver_make_thread_pool(h C.dshm_driver, count C.size_t, out *C.dshm_thread_pool) (st C.int) {
	defer recoverPanic(&st)
	d, err := lookup[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_driver_make_thread_pool: out is NULL"))
	}
	if uint64(count) > 1<<16 {
		return fail(invalid("dshm_driver_make_thread_pool: %d threads (at most 65536)", uint64(count)))
	}
	p, err := d.d.MakeThreadPool(diaspora.ThreadCount(count))
	if err != nil {
		return fail(err)
	}
	*out = C.dshm_thread_pool(newHandle(&cPool{p}))
	return C.DSHM_OK
}

//export dshmgo_thread_pool_count
func dshmgo_thread_pool_count(h C.dshm_thread_pool, count *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	p, err := lookup[*cPool](h, "thread pool")
	if err != nil {
		return fail(err)
	}
	if count == nil {
		return fail(invalid("dshm_thread_pool_count: count is NULL"))
	}
	*count = C.size_t(p.p.ThreadCount())
	return C.DSHM_OK
}

//export dshmgo_release
func dshmgo_release(h C.uint64_t, kind C.int) (st C.int) {
	defer recoverPanic(&st)
	var err error
	switch kind {
	case C.DSHM__KIND_POOL:
		_, err = take[*cPool](h, "thread pool")
	case C.DSHM__KIND_TOPIC:
		_, err = take[*cTopic](h, "topic")
	case C.DSHM__KIND_FUTURE:
		_, err = take[*cFuture](h, "future")
	case C.DSHM__KIND_EVENT:
		var e *cEvent
		if e, err = take[*cEvent](h, "event"); err == nil {
			e.free()
		}
	case C.DSHM__KIND_BATCH:
		var b *cBatch
		if b, err = take[*cBatch](h, "batch"); err == nil {
			b.free()
		}
	default:
		err = invalid("release of an unknown kind %d", int(kind))
	}
	return failOr(err)
}

//export dshmgo_topic_create
func dshmgo_topic_create(h C.dshm_driver, name, options, validator, selector, serializer *C.char) (st C.int) {
	defer recoverPanic(&st)
	d, err := lookup[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	n, err := goString(name, "dshm_topic_create: name")
	if err != nil {
		return fail(err)
	}
	var args []diaspora.TopicArg
	md, err := jsonArg(options, "dshm_topic_create: options")
	if err != nil {
		return fail(err)
	}
	args = append(args, md)
	if validator != nil {
		cfg, err := jsonArg(validator, "dshm_topic_create: validator")
		if err != nil {
			return fail(err)
		}
		v, err := diaspora.ValidatorFromMetadata(cfg)
		if err != nil {
			return fail(err)
		}
		args = append(args, v)
	}
	if selector != nil {
		cfg, err := jsonArg(selector, "dshm_topic_create: partition selector")
		if err != nil {
			return fail(err)
		}
		s, err := diaspora.PartitionSelectorFromMetadata(cfg)
		if err != nil {
			return fail(err)
		}
		args = append(args, s)
	}
	if serializer != nil {
		cfg, err := jsonArg(serializer, "dshm_topic_create: serializer")
		if err != nil {
			return fail(err)
		}
		z, err := diaspora.SerializerFromMetadata(cfg)
		if err != nil {
			return fail(err)
		}
		args = append(args, z)
	}
	return failOr(d.d.CreateTopic(n, args...))
}

//export dshmgo_topic_exists
func dshmgo_topic_exists(h C.dshm_driver, name *C.char, exists *C.int) (st C.int) {
	defer recoverPanic(&st)
	d, err := lookup[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	n, err := goString(name, "dshm_topic_exists: name")
	if err != nil {
		return fail(err)
	}
	if exists == nil {
		return fail(invalid("dshm_topic_exists: exists is NULL"))
	}
	ok, err := d.d.TopicExists(n)
	if err != nil {
		return fail(err)
	}
	*exists = 0
	if ok {
		*exists = 1
	}
	return C.DSHM_OK
}

//export dshmgo_topic_list
func dshmgo_topic_list(h C.dshm_driver, buf *C.char, cap C.size_t, length *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	d, err := lookup[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	topics, err := d.d.ListTopics()
	if err != nil {
		return fail(err)
	}
	b, err := json.Marshal(topics)
	if err != nil {
		return fail(err)
	}
	return failOr(writeText(buf, cap, length, b, "dshm_topic_list"))
}

//export dshmgo_topic_open
func dshmgo_topic_open(h C.dshm_driver, name *C.char, out *C.dshm_topic) (st C.int) {
	defer recoverPanic(&st)
	d, err := lookup[*cDriver](h, "driver")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_topic_open: out is NULL"))
	}
	*out = 0
	n, err := goString(name, "dshm_topic_open: name")
	if err != nil {
		return fail(err)
	}
	t, err := d.d.OpenTopic(n)
	if err != nil {
		return fail(err)
	}
	*out = C.dshm_topic(newHandle(&cTopic{t: t, d: d}))
	return C.DSHM_OK
}

//export dshmgo_topic_num_partitions
func dshmgo_topic_num_partitions(h C.dshm_topic, n *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	t, err := lookup[*cTopic](h, "topic")
	if err != nil {
		return fail(err)
	}
	if n == nil {
		return fail(invalid("dshm_topic_num_partitions: n is NULL"))
	}
	*n = C.size_t(len(t.t.Partitions()))
	return C.DSHM_OK
}

//export dshmgo_topic_partitions
func dshmgo_topic_partitions(h C.dshm_topic, buf *C.char, cap C.size_t, length *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	t, err := lookup[*cTopic](h, "topic")
	if err != nil {
		return fail(err)
	}
	b, err := json.Marshal(t.t.Partitions())
	if err != nil {
		return fail(err)
	}
	return failOr(writeText(buf, cap, length, b, "dshm_topic_partitions"))
}

//export dshmgo_topic_plugins
func dshmgo_topic_plugins(h C.dshm_topic, buf *C.char, cap C.size_t, length *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	t, err := lookup[*cTopic](h, "topic")
	if err != nil {
		return fail(err)
	}
	b, err := json.Marshal(map[string]diaspora.Metadata{
		"validator":          t.t.Validator().Metadata(),
		"partition_selector": t.t.PartitionSelector().Metadata(),
		"serializer":         t.t.Serializer().Metadata(),
	})
	if err != nil {
		return fail(err)
	}
	return failOr(writeText(buf, cap, length, b, "dshm_topic_plugins"))
}

//export dshmgo_topic_mark_complete
func dshmgo_topic_mark_complete(h C.dshm_topic) (st C.int) {
	defer recoverPanic(&st)
	t, err := lookup[*cTopic](h, "topic")
	if err != nil {
		return fail(err)
	}
	return failOr(t.t.MarkAsComplete())
}

// commonArgs are the arguments producers and consumers share, as JSON.
type commonArgs struct {
	BatchSize     json.RawMessage `json:"batch_size"`
	MaxNumBatches *int            `json:"max_num_batches"`
	ThreadPool    *uint64         `json:"thread_pool"`
	Options       json.RawMessage `json:"options"`
}

func (a commonArgs) args(what string) ([]diaspora.Arg, error) {
	var args []diaspora.Arg
	if len(a.BatchSize) > 0 && string(a.BatchSize) != "null" {
		var s string
		var n int64
		switch {
		case json.Unmarshal(a.BatchSize, &s) == nil:
			if s != "adaptive" {
				return nil, invalid("%s: batch_size %q: want a positive number or \"adaptive\"", what, s)
			}
			args = append(args, diaspora.AdaptiveBatchSize)
		case json.Unmarshal(a.BatchSize, &n) == nil:
			if n < 1 {
				return nil, invalid("%s: batch_size %d: want a positive number or \"adaptive\"", what, n)
			}
			args = append(args, diaspora.BatchSize(n))
		default:
			return nil, invalid("%s: batch_size %s: want a positive number or \"adaptive\"", what, a.BatchSize)
		}
	}
	if a.MaxNumBatches != nil {
		args = append(args, diaspora.MaxNumBatches(*a.MaxNumBatches))
	}
	if a.ThreadPool != nil {
		p, err := lookup[*cPool](C.uint64_t(*a.ThreadPool), "thread pool")
		if err != nil {
			return nil, fmt.Errorf("%s: thread_pool: %w", what, err)
		}
		args = append(args, p.p)
	}
	if len(a.Options) > 0 && string(a.Options) != "null" {
		md, err := diaspora.NewMetadata(string(a.Options))
		if err != nil {
			return nil, fmt.Errorf("%s: options: %w", what, err)
		}
		args = append(args, md)
	}
	return args, nil
}

// decodeArgs parses a JSON argument object into v, refusing unknown keys by
// name.
func decodeArgs(p *C.char, v any, what string) error {
	if p == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(C.GoString(p))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%s: args: %v", what, err)
	}
	return nil
}
