//! Bringing the operands of one call to a common, simplest layout, without copying them.
//!
//! All operands have the input's shape (weights are broadcast views with zero strides). The
//! axes are put in the input's memory order (so a Fortran-ordered input is walked in memory
//! order and its output is Fortran-ordered too), adjacent axes that every operand can walk as
//! one are merged, and axes of length 1 are dropped. What is left is usually one axis (all
//! contiguous) or two (a broadcast weight over rows); any layout NumPy allows ends up here.

use ndarray::{ArrayView1, ArrayView2, ArrayViewD, Axis, Ix2};

/// The operands of one call in their canonical layout.
pub(crate) struct Canonical<'a, F> {
    /// The views, input first; all of one shape.
    pub views: Vec<ArrayViewD<'a, F>>,
    /// The mask, in the same layout.
    pub mask: Option<ArrayViewD<'a, bool>>,
    /// The axis order applied to the input's shape: `permuted[i] = shape[perm[i]]`.
    pub perm: Vec<usize>,
    /// The canonical shape (at least one axis).
    pub shape: Vec<usize>,
}

impl<'a, F> Canonical<'a, F> {
    /// Canonicalises `views` and `mask` (all of one shape, the input first, none empty).
    ///
    /// With `kept` (a reduction over the other axes), the kept axes come first, in their
    /// order, and axes merge only with axes of their own kind: walking the canonical layout in
    /// C order then visits each element of the result's slots one after the other.
    pub(crate) fn new(
        mut views: Vec<ArrayViewD<'a, F>>,
        mut mask: Option<ArrayViewD<'a, bool>>,
        kept: Option<&[usize]>,
    ) -> Self {
        let ndim = views.first().map_or(0, |v| v.ndim());
        let kept = kept.unwrap_or(&[]);
        let is_kept = |ax: usize| kept.contains(&ax);

        // The common case, cheaply: everything contiguous in C order is one axis (with kept
        // axes, when they are the leading ones).
        let leading = kept.iter().enumerate().all(|(i, &ax)| i == ax);
        let flat: Option<Vec<&'a [F]>> = views.iter().map(|v| v.to_slice()).collect();
        let mask_flat = mask.as_ref().map(|m| m.to_slice());
        if let (true, Some(slices), None | Some(Some(_))) = (leading, flat, mask_flat) {
            let n = slices.first().map_or(0, |s| s.len());
            return Canonical {
                views: slices
                    .into_iter()
                    .map(|s| ArrayView1::from(s).into_dyn())
                    .collect(),
                mask: mask_flat.flatten().map(|m| ArrayView1::from(m).into_dyn()),
                perm: (0..ndim).collect(),
                shape: vec![n],
            };
        }

        // The kept axes in their order, then the others in the input's memory order (largest
        // |stride| outermost; ties keep their order).
        let mut rest: Vec<usize> = (0..ndim).filter(|&ax| !is_kept(ax)).collect();
        if let Some(x) = views.first() {
            let strides = x.strides().to_vec();
            rest.sort_by_key(|&ax| core::cmp::Reverse(strides[ax].unsigned_abs()));
        }
        let perm: Vec<usize> = kept.iter().copied().chain(rest).collect();
        for v in &mut views {
            *v = v.clone().permuted_axes(perm.clone());
        }
        if let Some(m) = &mut mask {
            *m = m.clone().permuted_axes(perm.clone());
        }

        // Merge each axis into the next inner one where every operand allows it and both are
        // of one kind.
        if ndim >= 2 {
            let mut into = ndim - 1;
            for take in (0..ndim - 1).rev() {
                let mut merged = views.clone();
                let mut merged_mask = mask.clone();
                let ok = is_kept(perm[take]) == is_kept(perm[into])
                    && merged
                        .iter_mut()
                        .all(|v| v.merge_axes(Axis(take), Axis(into)))
                    && merged_mask
                        .as_mut()
                        .is_none_or(|m| m.merge_axes(Axis(take), Axis(into)));
                if ok {
                    views = merged;
                    mask = merged_mask;
                } else {
                    into = take;
                }
            }
        }

        // Drop the axes of length 1, keeping one axis at least.
        let len1: Vec<usize> = match views.first() {
            Some(x) => (0..ndim).filter(|&ax| x.len_of(Axis(ax)) == 1).collect(),
            None => Vec::new(),
        };
        for &ax in len1.iter().rev() {
            for v in &mut views {
                *v = v.clone().index_axis_move(Axis(ax), 0);
            }
            if let Some(m) = &mut mask {
                *m = m.clone().index_axis_move(Axis(ax), 0);
            }
        }
        if views.first().is_some_and(|x| x.ndim() == 0) {
            for v in &mut views {
                *v = v.clone().insert_axis(Axis(0));
            }
            if let Some(m) = &mut mask {
                *m = m.clone().insert_axis(Axis(0));
            }
        }
        let shape = views.first().map_or_else(Vec::new, |x| x.shape().to_vec());
        Canonical {
            views,
            mask,
            perm,
            shape,
        }
    }

    /// The operand `view` as a stack of 2-D panels: the `panel`-th of them.
    ///
    /// With one canonical axis there is one panel of one row; with two, one panel; with more,
    /// the outer axes index the panels.
    pub(crate) fn panel<T>(
        &self,
        view: &ArrayViewD<'a, T>,
        panel: usize,
    ) -> Option<ArrayView2<'a, T>> {
        let k = self.shape.len();
        let mut v = view.clone();
        match k {
            0 => return None,
            1 => v = v.insert_axis(Axis(0)),
            _ => {
                let mut rest = panel;
                let mut idx = vec![0; k - 2];
                for ax in (0..k - 2).rev() {
                    let len = self.shape[ax].max(1);
                    idx[ax] = rest % len;
                    rest /= len;
                }
                // Removing axis 0 brings the next outer axis to 0.
                for &i in &idx {
                    v = v.index_axis_move(Axis(0), i);
                }
            }
        }
        v.into_dimensionality::<Ix2>().ok()
    }

    /// The panels' shape: (rows, columns).
    pub(crate) fn panel_shape(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [] => (0, 0),
            [l] => (1, *l),
            [.., r, l] => (*r, *l),
        }
    }

    /// Number of panels.
    pub(crate) fn panels(&self) -> usize {
        let k = self.shape.len();
        if k <= 2 {
            1
        } else {
            self.shape[..k - 2].iter().product()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array, ArrayD, IxDyn, ShapeBuilder};

    fn canon_shape(views: Vec<ArrayViewD<'_, f64>>) -> Vec<usize> {
        Canonical::new(views, None, None).shape
    }

    impl<'a> Canonical<'a, f64> {
        fn new_plain(views: Vec<ArrayViewD<'a, f64>>) -> Self {
            Canonical::new(views, None, None)
        }
    }

    #[test]
    fn kept_axes_come_first_and_merge_among_themselves() {
        // A C-ordered (2, 3, 4) array reduced over axis 1: kept axes 0 and 2 come first.
        let a = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f64);
        let c = Canonical::new(vec![a.view().into_dyn()], None, Some(&[0, 2]));
        assert_eq!(c.perm, vec![0, 2, 1]);
        // Axes 0 and 2 cannot merge (not adjacent in memory); the reduced axis is alone.
        assert_eq!(c.shape, vec![2, 4, 3]);
        assert_eq!(c.views[0][[1, 2, 0]], 102.0);
        // Reduced over the last two axes: kept axis 0 first, the other two merge.
        let mask = ArrayD::from_elem(IxDyn(&[2, 3, 4]), true);
        let c = Canonical::new(
            vec![a.slice(s![..;-1, .., ..]).into_dyn()],
            Some(mask.view()),
            Some(&[0]),
        );
        assert_eq!(c.shape, vec![2, 12]);
        assert_eq!(
            c.mask.as_ref().map(|m| m.shape().to_vec()),
            Some(vec![2, 12])
        );
        // A leading kept axis of contiguous operands: one axis.
        let c = Canonical::new(vec![a.view().into_dyn()], None, Some(&[0]));
        assert_eq!(c.shape, vec![24]);
    }

    #[test]
    fn contiguous_arrays_become_one_axis() {
        let a = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 4]));
        let f = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 4]).f());
        assert_eq!(canon_shape(vec![a.view(), a.view()]), vec![24]);
        assert_eq!(canon_shape(vec![f.view(), f.view()]), vec![24]);
    }

    #[test]
    fn broadcast_rows_stay_two_axes() {
        let a = ArrayD::<f64>::zeros(IxDyn(&[5, 3]));
        let w = Array::from_vec(vec![1.0, 2.0, 3.0]).into_dyn();
        let wb = w.broadcast(IxDyn(&[5, 3])).unwrap();
        assert_eq!(canon_shape(vec![a.view(), wb]), vec![5, 3]);
    }

    #[test]
    fn length_one_axes_are_dropped() {
        let a = ArrayD::<f64>::zeros(IxDyn(&[1, 4, 1]));
        let s = ArrayD::<f64>::zeros(IxDyn(&[]));
        assert_eq!(canon_shape(vec![a.view()]), vec![4]);
        assert_eq!(canon_shape(vec![s.view()]), vec![1]);
    }

    #[test]
    fn panels_of_a_three_axis_layout() {
        let a = Array::from_shape_fn((2, 3, 8), |(i, j, k)| (i * 100 + j * 10 + k) as f64);
        // Every second column: still one axis.
        let c = Canonical::new_plain(vec![a.slice(s![.., .., ..;2]).into_dyn()]);
        assert_eq!(c.shape, vec![24]);
        // The first three columns: the two outer axes merge.
        let c = Canonical::new_plain(vec![a.slice(s![.., .., ..3]).into_dyn()]);
        assert_eq!(c.shape, vec![6, 3]);
        assert_eq!(c.panel(&c.views[0], 0).unwrap()[[4, 1]], 111.0);
        // Nothing merges: two panels.
        let c = Canonical::new_plain(vec![a.slice(s![.., ..2, ..3]).into_dyn()]);
        assert_eq!(c.shape, vec![2, 2, 3]);
        assert_eq!(c.panels(), 2);
        assert_eq!(c.panel(&c.views[0], 1).unwrap()[[1, 2]], 112.0);
    }
}
