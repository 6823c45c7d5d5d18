// kdloss/losses/drkd/drkd.hpp: the DRKD family (Dual Relation Knowledge Distillation, seed 000), namespace
// kdloss::drkd. Pixel-wise relation: the seed's full-resolution relation loss (pixel_relation.hpp) and the
// official code's GloRe relation L_PR (glore_relation.hpp). Instance-wise relation: the official code's
// ObjectRelation form L_IR + L_fg (instance_relation.hpp) and the seed's cosine-relation form with the
// relation filter (instance_relation_paper.hpp); either form from the feature maps and the boxes, pooled by
// RoIAlign (instance_relation_maps.hpp). The total over a pyramid with the code's and the paper's presets:
// total.hpp.
#pragma once
#include "kdloss/losses/drkd/glore_relation.hpp"
#include "kdloss/losses/drkd/instance_relation.hpp"
#include "kdloss/losses/drkd/instance_relation_maps.hpp"
#include "kdloss/losses/drkd/instance_relation_paper.hpp"
#include "kdloss/losses/drkd/pixel_relation.hpp"
#include "kdloss/losses/drkd/total.hpp"
