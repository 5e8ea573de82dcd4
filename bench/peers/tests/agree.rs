//! Every engine gives the ground truth's answer to every question (a smaller model than the
//! benchmark's, so that it runs in the test suite).

use permgate_peers::{Model, disagreements};

#[test]
fn every_engine_answers_every_question_as_the_ground_truth_does() {
    let model = Model::new(500);
    let cases = model.cases(2000, 11);
    let (wrong, allowed) = disagreements(&model, &cases);
    assert_eq!(wrong, [0; 4], "wrong answers (permgate, Cedar, Rego, casbin)");
    assert!(allowed > 200 && allowed < 1800, "both answers are asked for: {allowed} of 2000 allowed");
}
