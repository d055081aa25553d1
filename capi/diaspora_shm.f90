! diaspora_shm.f90: Fortran bindings of libdiaspora_shm (ISO_C_BINDING).
! The calls and their rules are those of diaspora_shm.h; strings passed in
! end with c_null_char, handles are integer(c_int64_t), statuses
! integer(c_int) (DSHM_OK = 0).
!
!   gfortran -c capi/diaspora_shm.f90
!   gfortran -o sim sim.f90 diaspora_shm.o -Llib -ldiaspora_shm
module diaspora_shm
  use, intrinsic :: iso_c_binding
  implicit none

  integer(c_int), parameter :: DSHM_OK = 0, DSHM_ETIMEOUT = -4, DSHM_EEXISTS = -7
  integer(c_int64_t), parameter :: DSHM_ANY_PARTITION = -1_c_int64_t
  integer(c_int64_t), parameter :: DSHM_FOREVER = -1_c_int64_t
  integer(c_int64_t), parameter :: DSHM_NO_MORE_EVENTS = -1_c_int64_t ! UINT64_MAX, read as signed
  integer(c_size_t), parameter :: DSHM_WHOLE_BATCH = -1_c_size_t ! SIZE_MAX, for dshm_batch_acknowledge

  type, bind(c) :: dshm_segment
    type(c_ptr) :: data
    integer(c_size_t) :: size
  end type

  type, bind(c) :: dshm_event_info
    integer(c_int64_t) :: id
    integer(c_size_t) :: partition
    type(c_ptr) :: metadata
    integer(c_size_t) :: metadata_size
    type(c_ptr) :: partition_info
    integer(c_size_t) :: data_size
    integer(c_size_t) :: num_segments
    type(dshm_segment) :: first
  end type

  interface
    function dshm_last_error() bind(c, name="dshm_last_error")
      import :: c_ptr
      type(c_ptr) :: dshm_last_error
    end function

    function dshm_driver_open(backend, options, d) bind(c, name="dshm_driver_open")
      import :: c_int, c_char, c_int64_t
      character(kind=c_char), dimension(*), intent(in) :: backend, options
      integer(c_int64_t), intent(out) :: d
      integer(c_int) :: dshm_driver_open
    end function

    function dshm_driver_close(d) bind(c, name="dshm_driver_close")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: d
      integer(c_int) :: dshm_driver_close
    end function

    function dshm_topic_create(d, name, options, validator, selector, serializer) &
        bind(c, name="dshm_topic_create")
      import :: c_int, c_char, c_int64_t, c_ptr
      integer(c_int64_t), value :: d
      character(kind=c_char), dimension(*), intent(in) :: name, options
      type(c_ptr), value :: validator, selector, serializer ! c_null_ptr: the defaults
      integer(c_int) :: dshm_topic_create
    end function

    function dshm_topic_open(d, name, t) bind(c, name="dshm_topic_open")
      import :: c_int, c_char, c_int64_t
      integer(c_int64_t), value :: d
      character(kind=c_char), dimension(*), intent(in) :: name
      integer(c_int64_t), intent(out) :: t
      integer(c_int) :: dshm_topic_open
    end function

    function dshm_topic_mark_complete(t) bind(c, name="dshm_topic_mark_complete")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: t
      integer(c_int) :: dshm_topic_mark_complete
    end function

    function dshm_topic_release(t) bind(c, name="dshm_topic_release")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: t
      integer(c_int) :: dshm_topic_release
    end function

    function dshm_producer_open(t, name, args, p) bind(c, name="dshm_producer_open")
      import :: c_int, c_char, c_int64_t, c_ptr
      integer(c_int64_t), value :: t
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value :: args ! c_null_ptr: the defaults
      integer(c_int64_t), intent(out) :: p
      integer(c_int) :: dshm_producer_open
    end function

    function dshm_producer_push(p, metadata, metadata_size, segments, num_segments, partition, future) &
        bind(c, name="dshm_producer_push")
      import :: c_int, c_char, c_int64_t, c_size_t, c_ptr, dshm_segment
      integer(c_int64_t), value :: p
      character(kind=c_char), dimension(*), intent(in) :: metadata
      integer(c_size_t), value :: metadata_size
      type(dshm_segment), dimension(*), intent(in) :: segments
      integer(c_size_t), value :: num_segments
      integer(c_int64_t), value :: partition
      type(c_ptr), value :: future ! c_null_ptr: untracked, reported by flush
      integer(c_int) :: dshm_producer_push
    end function

    function dshm_producer_flush(p, timeout_ms) bind(c, name="dshm_producer_flush")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: p, timeout_ms
      integer(c_int) :: dshm_producer_flush
    end function

    function dshm_producer_close(p) bind(c, name="dshm_producer_close")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: p
      integer(c_int) :: dshm_producer_close
    end function

    function dshm_consumer_open(t, name, args, selector, allocator, ctx, c) bind(c, name="dshm_consumer_open")
      import :: c_int, c_char, c_int64_t, c_ptr, c_funptr
      integer(c_int64_t), value :: t
      character(kind=c_char), dimension(*), intent(in) :: name, args
      type(c_funptr), value :: selector, allocator ! c_null_funptr: none
      type(c_ptr), value :: ctx
      integer(c_int64_t), intent(out) :: c
      integer(c_int) :: dshm_consumer_open
    end function

    function dshm_consumer_pull(c, timeout_ms, ev) bind(c, name="dshm_consumer_pull")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: c, timeout_ms
      integer(c_int64_t), intent(out) :: ev
      integer(c_int) :: dshm_consumer_pull
    end function

    function dshm_consumer_close(c) bind(c, name="dshm_consumer_close")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: c
      integer(c_int) :: dshm_consumer_close
    end function

    function dshm_event_get_info(ev, info) bind(c, name="dshm_event_get_info")
      import :: c_int, c_int64_t, dshm_event_info
      integer(c_int64_t), value :: ev
      type(dshm_event_info), intent(out) :: info
      integer(c_int) :: dshm_event_get_info
    end function

    function dshm_event_segments(ev, segments, cap, n) bind(c, name="dshm_event_segments")
      import :: c_int, c_int64_t, c_size_t, dshm_segment
      integer(c_int64_t), value :: ev
      type(dshm_segment), dimension(*), intent(out) :: segments
      integer(c_size_t), value :: cap
      integer(c_size_t), intent(out) :: n
      integer(c_int) :: dshm_event_segments
    end function

    function dshm_event_acknowledge(ev) bind(c, name="dshm_event_acknowledge")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: ev
      integer(c_int) :: dshm_event_acknowledge
    end function

    function dshm_event_release(ev) bind(c, name="dshm_event_release")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: ev
      integer(c_int) :: dshm_event_release
    end function

    ! Batches: many events under one handle (infos(1:n) describe them).
    function dshm_batch_pull(c, timeout_ms, max, batch, infos, n) bind(c, name="dshm_batch_pull")
      import :: c_int, c_int64_t, c_size_t, dshm_event_info
      integer(c_int64_t), value :: c, timeout_ms
      integer(c_size_t), value :: max
      integer(c_int64_t), intent(out) :: batch
      type(dshm_event_info), intent(out) :: infos(*)
      integer(c_size_t), intent(out) :: n
      integer(c_int) :: dshm_batch_pull
    end function

    ! i counts from 0, as in every dshm_batch_* call.
    function dshm_batch_segments(batch, i, out, cap, n) bind(c, name="dshm_batch_segments")
      import :: c_int, c_int64_t, c_size_t, dshm_segment
      integer(c_int64_t), value :: batch
      integer(c_size_t), value :: i, cap
      type(dshm_segment), intent(out) :: out(*)
      integer(c_size_t), intent(out) :: n
      integer(c_int) :: dshm_batch_segments
    end function

    ! Offsets of each event's data from the lowest address among them.
    function dshm_batch_spans(batch, n, base, starts, ends) bind(c, name="dshm_batch_spans")
      import :: c_int, c_int64_t, c_size_t
      integer(c_int64_t), value :: batch
      integer(c_size_t), value :: n
      integer(c_int64_t), intent(out) :: base, starts(*), ends(*)
      integer(c_int) :: dshm_batch_spans
    end function

    ! DSHM_WHOLE_BATCH acknowledges every event of the batch.
    function dshm_batch_acknowledge(batch, i) bind(c, name="dshm_batch_acknowledge")
      import :: c_int, c_int64_t, c_size_t
      integer(c_int64_t), value :: batch
      integer(c_size_t), value :: i
      integer(c_int) :: dshm_batch_acknowledge
    end function

    function dshm_batch_release(batch) bind(c, name="dshm_batch_release")
      import :: c_int, c_int64_t
      integer(c_int64_t), value :: batch
      integer(c_int) :: dshm_batch_release
    end function
  end interface

contains

  ! The calling thread's last error, as a Fortran string.
  function dshm_error_message() result(msg)
    character(len=:), allocatable :: msg
    character(kind=c_char), pointer :: chars(:)
    integer :: n
    type(c_ptr) :: p
    interface
      function strlen(s) bind(c, name="strlen")
        import :: c_ptr, c_size_t
        type(c_ptr), value :: s
        integer(c_size_t) :: strlen
      end function
    end interface
    p = dshm_last_error()
    n = int(strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: msg)
    msg = transfer(chars(1:n), msg)
  end function
end module
