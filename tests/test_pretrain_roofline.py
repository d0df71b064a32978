"""HBM traffic as `hlo.parse` counts it, on a program small enough to count by hand."""

from ssljax.aot import hlo

# A loop of 4 trips: each reads row i of a 4x256 f32 buffer (1 KiB) through a fused
# dynamic-slice, scales it, and writes it into row i of another in place; a VMEM (S(1))
# scalar operand and the SMEM (S(6)) loop counter are no HBM traffic. Outside the loop one
# add reads 2 buffers and writes 1.
_TEXT = '''HloModule m

%fused_update (p0: f32[4,256], p1: f32[1,256], p2: s32[]) -> f32[4,256] {
  %p0 = f32[4,256]{1,0} parameter(0)
  %p1 = f32[1,256]{1,0} parameter(1)
  %p2 = s32[]{:T(128)S(6)} parameter(2)
  %z = s32[] constant(0)
  ROOT %dus = f32[4,256]{1,0} dynamic-update-slice(%p0, %p1, %p2, %z)
}

%fused_slice (q0: f32[4,256], q1: s32[], q2: f32[]) -> f32[1,256] {
  %q0 = f32[4,256]{1,0} parameter(0)
  %q1 = s32[]{:T(128)S(6)} parameter(1)
  %q2 = f32[]{:T(128)S(1)} parameter(2)
  %z = s32[] constant(0)
  %ds = f32[1,256]{1,0} dynamic-slice(%q0, %q1, %z), dynamic_slice_sizes={1,256}
  %b = f32[1,256]{1,0} broadcast(%q2), dimensions={}
  ROOT %m = f32[1,256]{1,0} multiply(%ds, %b)
}

%cond (c: (s32[], f32[4,256], f32[4,256], f32[])) -> pred[] {
  %c = (s32[], f32[4,256]{1,0}, f32[4,256]{1,0}, f32[]) parameter(0)
  %i = s32[]{:T(128)S(6)} get-tuple-element(%c), index=0
  %n = s32[]{:T(128)S(6)} constant(4)
  ROOT %lt = pred[]{:T(512)S(6)} compare(%i, %n), direction=LT
}

%body (b: (s32[], f32[4,256], f32[4,256], f32[])) -> (s32[], f32[4,256], f32[4,256], f32[]) {
  %b = (s32[], f32[4,256]{1,0}, f32[4,256]{1,0}, f32[]) parameter(0)
  %i = s32[]{:T(128)S(6)} get-tuple-element(%b), index=0
  %x = f32[4,256]{1,0} get-tuple-element(%b), index=1
  %y = f32[4,256]{1,0} get-tuple-element(%b), index=2
  %s = f32[]{:T(128)S(1)} get-tuple-element(%b), index=3
  %row = f32[1,256]{1,0} fusion(%x, %i, %s), kind=kLoop, calls=%fused_slice
  %y2 = f32[4,256]{1,0} fusion(%y, %row, %i), kind=kLoop, calls=%fused_update
  ROOT %t = (s32[], f32[4,256]{1,0}, f32[4,256]{1,0}, f32[]) tuple(%i, %x, %y2, %s)
}

ENTRY %main (a: f32[4,256], s: f32[]) -> f32[4,256] {
  %a = f32[4,256]{1,0} parameter(0)
  %s = f32[]{:T(128)S(1)} parameter(1)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4,256]{1,0}, f32[4,256]{1,0}, f32[]) tuple(%zero, %a, %a, %s)
  %w = (s32[], f32[4,256]{1,0}, f32[4,256]{1,0}, f32[]) while(%init), condition=%cond, body=%body
  %out = f32[4,256]{1,0} get-tuple-element(%w), index=2
  ROOT %sum = f32[4,256]{1,0} add(%out, %a)
}
'''


def test_hbm_traffic_counts_loop_trips_slices_and_memory_spaces():
  row, buf = 256 * 4, 4 * 256 * 4
  # Per trip: the slice fusion reads a row and writes one; the update reads the row and
  # writes it in place (the 4 KiB buffer is neither read nor rewritten). After the loop:
  # the add, 3 buffers.
  per_trip = (row + row) + (row + row)
  assert hlo.parse(_TEXT)['hbm_traffic'] == 4 * per_trip + 3 * buf


def test_whole_buffer_fusion_counts_all_of_its_operands():
  """A fusion that reads a buffer elementwise (no slice) reads all of it."""
  text = _TEXT.replace('%ds = f32[1,256]{1,0} dynamic-slice(%q0, %q1, %z), '
                       'dynamic_slice_sizes={1,256}', '%ds = f32[1,256]{1,0} slice(%q0), '
                       'slice={[0:1], [0:256]}')
  row, buf = 256 * 4, 4 * 256 * 4
  per_trip = (buf + row) + (row + row)
  assert hlo.parse(text)['hbm_traffic'] == 4 * per_trip + 3 * buf
