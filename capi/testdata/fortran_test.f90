! fortran_test.f90: a Fortran producer and consumer through diaspora_shm.f90.
!   fortran_test ROOT SHM
! Pushes 50 frames of 1000 real(c_float) values (value k of frame i is
! i * 1000 + k), reads them back in place and checks every value.
program fortran_test
  use, intrinsic :: iso_c_binding
  use diaspora_shm
  implicit none
  integer(c_int64_t) :: d, t, p, c, ev, b
  integer(c_int) :: rc
  integer :: i, k
  character(len=4096) :: root, shm
  character(len=:), allocatable :: opts, md
  real(c_float), target :: frame(1000)
  real(c_float), pointer :: got(:)
  type(dshm_segment) :: seg(1), segs(4)
  type(dshm_event_info) :: info, infos(16)
  integer(c_size_t) :: nseg, n, j
  integer :: seen

  call get_command_argument(1, root)
  call get_command_argument(2, shm)
  opts = '{"root_path": "' // trim(root) // '", "shm_path": "' // trim(shm) // '"}' // c_null_char
  call check(dshm_driver_open("shm" // c_null_char, opts, d), "open the driver")
  call check(dshm_topic_create(d, "fortran" // c_null_char, "{}" // c_null_char, &
       c_null_ptr, c_null_ptr, c_null_ptr), "create the topic")
  call check(dshm_topic_open(d, "fortran" // c_null_char, t), "open the topic")
  call check(dshm_producer_open(t, "fortran" // c_null_char, c_null_ptr, p), "make the producer")
  do i = 0, 49
    do k = 1, 1000
      frame(k) = real(i * 1000 + k, c_float)
    end do
    seg(1)%data = c_loc(frame)
    seg(1)%size = int(4 * size(frame), c_size_t)
    md = '{"frame": ' // itoa(i) // '}'
    call check(dshm_producer_push(p, md, int(len(md), c_size_t), seg, 1_c_size_t, DSHM_ANY_PARTITION, &
         c_null_ptr), "push")
    ! The data is read when the push completes: flush before reusing frame.
    call check(dshm_producer_flush(p, DSHM_FOREVER), "flush")
  end do
  call check(dshm_producer_close(p), "close the producer")

  call check(dshm_consumer_open(t, "fortran" // c_null_char, '{"data": "all"}' // c_null_char, &
       c_null_funptr, c_null_funptr, c_null_ptr, c), "make the consumer")
  do i = 0, 49
    call check(dshm_consumer_pull(c, 30000_c_int64_t, ev), "pull")
    call check(dshm_event_get_info(ev, info), "event info")
    if (info%id /= i .or. info%data_size /= 4000) then
      print *, "event", i, "has id", info%id, "and", info%data_size, "bytes"
      stop 1
    end if
    call check(dshm_event_segments(ev, segs, 4_c_size_t, nseg), "segments")
    call c_f_pointer(segs(1)%data, got, [1000])
    do k = 1, 1000
      if (got(k) /= real(i * 1000 + k, c_float)) then
        print *, "frame", i, "value", k, "is", got(k)
        stop 1
      end if
    end do
    call check(dshm_event_acknowledge(ev), "acknowledge")
    call check(dshm_event_release(ev), "release")
  end do
  call check(dshm_consumer_close(c), "close the consumer")

  ! The same frames again, by batches of up to 16, under another name.
  call check(dshm_consumer_open(t, "batches" // c_null_char, '{"data": "all"}' // c_null_char, &
       c_null_funptr, c_null_funptr, c_null_ptr, c), "make the batch consumer")
  seen = 0
  do while (seen < 50)
    call check(dshm_batch_pull(c, 30000_c_int64_t, 16_c_size_t, b, infos, n), "pull a batch")
    do j = 1, n
      call check(dshm_batch_segments(b, j - 1, segs, 4_c_size_t, nseg), "batch segments")
      if (nseg /= 1 .or. .not. c_associated(segs(1)%data, infos(j)%first%data)) then
        print *, "batch event", seen, "has", nseg, "segments"
        stop 1
      end if
      call c_f_pointer(infos(j)%first%data, got, [1000])
      if (infos(j)%id /= seen .or. got(1000) /= real(seen * 1000 + 1000, c_float)) then
        print *, "batch event", seen, "has id", infos(j)%id, "and last value", got(1000)
        stop 1
      end if
      seen = seen + 1
    end do
    call check(dshm_batch_acknowledge(b, DSHM_WHOLE_BATCH), "acknowledge the batch")
    call check(dshm_batch_release(b), "release the batch")
  end do
  call check(dshm_consumer_close(c), "close the batch consumer")
  call check(dshm_topic_release(t), "release the topic")
  call check(dshm_driver_close(d), "close the driver")
  print '(a)', "ok"

contains

  subroutine check(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= DSHM_OK) then
      print '(a, a, i0, a, a)', what, ": status ", status, ": ", dshm_error_message()
      stop 1
    end if
  end subroutine

  function itoa(n) result(s)
    integer, intent(in) :: n
    character(len=:), allocatable :: s
    character(len=16) :: buf
    write (buf, '(i0)') n
    s = trim(buf)
  end function
end program
